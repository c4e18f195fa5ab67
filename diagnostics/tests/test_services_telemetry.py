from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from diagnostics.models import TelemetryLatest, TelemetrySample
from diagnostics.services import prune_telemetry, record_presence, record_telemetry
from diagnostics.tests.factories import telemetry

pytestmark = pytest.mark.django_db


def test_latest_keeps_newest_value_of_each_signal_even_when_messages_arrive_out_of_order(vehicle):
    record_telemetry(
        vehicle=vehicle,
        report=telemetry(vehicle.vin, seq=2, timestamp=2000, values={"speed_kph": 50}),
    )
    record_telemetry(
        vehicle=vehicle,
        report=telemetry(vehicle.vin, seq=1, timestamp=1000, values={"speed_kph": 10, "gear": "D"}),
    )
    latest = TelemetryLatest.objects.get(vehicle=vehicle)
    assert latest.values == {"speed_kph": 50, "gear": "D"}
    assert latest.seq == 2


def test_iso_timestamps_are_accepted(vehicle):
    record_telemetry(
        vehicle=vehicle, report=telemetry(vehicle.vin, timestamp="2026-11-26T10:00:00Z")
    )
    assert TelemetrySample.objects.get().reported_at.year == 2026


def test_offline_keeps_last_seen(vehicle):
    record_presence(vehicle=vehicle, state="online")
    vehicle.refresh_from_db()
    seen = vehicle.last_seen_at
    record_presence(vehicle=vehicle, state="offline", reason="connection lost")
    vehicle.refresh_from_db()
    assert not vehicle.is_online
    assert vehicle.last_seen_at == seen


def _history(vehicle, count):
    for seq in range(1, count + 1):
        record_telemetry(
            vehicle=vehicle, report=telemetry(vehicle.vin, seq=seq, timestamp=1000 + seq)
        )


def test_prune_deletes_by_age_but_keeps_latest_values(vehicle):
    _history(vehicle, 3)
    TelemetrySample.objects.filter(seq=1).update(received_at=timezone.now() - timedelta(days=40))
    assert prune_telemetry(older_than=timedelta(days=30)) == 1
    assert list(TelemetrySample.objects.values_list("seq", flat=True)) == [3, 2]
    assert TelemetryLatest.objects.filter(vehicle=vehicle).exists()


def test_prune_bounds_history_per_vehicle(vehicle, other_vehicle):
    _history(vehicle, 5)
    _history(other_vehicle, 2)
    assert prune_telemetry(older_than=timedelta(days=30), keep_per_vehicle=2) == 3
    assert list(TelemetrySample.objects.filter(vehicle=vehicle).values_list("seq", flat=True)) == [
        5,
        4,
    ]
    assert TelemetrySample.objects.filter(vehicle=other_vehicle).count() == 2


def test_prune_command_reports_what_it_deleted(vehicle, capsys):
    _history(vehicle, 4)
    call_command("prune_telemetry", "--days", "30", "--keep", "1")
    assert "deleted 3 telemetry messages" in capsys.readouterr().out
