"""Telemetry history partitioned by day on PostgreSQL: where rows land, and retention by day."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from core.models import AuditEvent
from diagnostics import partitions
from diagnostics.models import TelemetrySample
from diagnostics.services import (
    ensure_telemetry_partitions,
    prune_telemetry,
    record_telemetry_batch,
)
from diagnostics.tests.factories import telemetry

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="only PostgreSQL partitions the history"
    ),
]


def _where(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tableoid::regclass::text FROM {partitions.TABLE} WHERE id = %s", [pk]
        )
        return cursor.fetchone()[0]


def _day_tables() -> list[str]:
    with connection.cursor() as cursor:
        return [p.name for p in partitions.day_partitions(cursor)]


def _store(vehicle, seq: int, at: datetime) -> TelemetrySample:
    record_telemetry_batch(
        reports=[(vehicle, telemetry(vehicle.vin, seq=seq, timestamp=at.timestamp()))]
    )
    return TelemetrySample.objects.get(vehicle=vehicle, seq=seq)


def _noon(days_from_today: int) -> datetime:
    day = timezone.now().date() + timedelta(days=days_from_today)
    return datetime.combine(day, time(12), tzinfo=UTC)


def test_the_history_has_a_table_for_each_day_from_today_to_a_week_ahead_and_a_default():
    today = timezone.now().date()
    wanted = [partitions.day_partition(today + timedelta(days=n)).name for n in range(8)]
    assert set(wanted) <= set(_day_tables())
    with connection.cursor() as cursor:
        assert partitions.is_partitioned(cursor)
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [partitions.DEFAULT_PARTITION])
        assert cursor.fetchone()[0]


def test_a_message_lands_in_its_day_and_a_redelivery_adds_no_row(vehicle):
    sample = _store(vehicle, 1, _noon(0))
    assert _where(sample.pk) == partitions.day_partition(_noon(0).date()).name
    record_telemetry_batch(
        reports=[(vehicle, telemetry(vehicle.vin, seq=1, timestamp=_noon(0).timestamp()))]
    )
    assert TelemetrySample.objects.filter(vehicle=vehicle).count() == 1


def test_a_timestamp_no_day_covers_waits_in_the_default_and_moves_when_its_day_arrives(vehicle):
    far = _noon(40)
    sample = _store(vehicle, 1, far)
    assert _where(sample.pk) == partitions.DEFAULT_PARTITION
    with connection.cursor() as cursor:
        assert partitions.ensure_days(cursor, far.date(), far.date()) == 1
    assert _where(sample.pk) == partitions.day_partition(far.date()).name
    assert TelemetrySample.objects.get(pk=sample.pk).seq == 1


def test_ensuring_partitions_twice_creates_them_once():
    ensure_telemetry_partitions(days_ahead=10)
    before = _day_tables()
    assert ensure_telemetry_partitions(days_ahead=10) == 0
    assert _day_tables() == before


def test_retention_drops_whole_days_keeps_a_day_only_partly_old_and_prunes_the_default(vehicle):
    old_day = _noon(-40)
    boundary = _noon(-30)
    with connection.cursor() as cursor:
        partitions.ensure_days(cursor, old_day.date(), boundary.date())
    for seq in range(1, 4):
        _store(vehicle, seq, old_day + timedelta(minutes=seq))
    # Thirty days and a few hours old, but its day reaches past the cutoff: kept for now.
    partly_old = _store(vehicle, 5, boundary - timedelta(hours=11))
    # Received long ago, reported in no day's range: only the row delete can take it.
    stray = _store(vehicle, 10, datetime(2001, 1, 1, tzinfo=UTC))
    TelemetrySample.objects.filter(pk=stray.pk).update(received_at=old_day)
    recent = _store(vehicle, 20, _noon(0))

    assert prune_telemetry(older_than=timedelta(days=30), actor="system:test") == 4

    assert partitions.day_partition(old_day.date()).name not in _day_tables()
    assert partitions.day_partition(boundary.date()).name in _day_tables()
    assert set(TelemetrySample.objects.values_list("pk", flat=True)) == {
        partly_old.pk,
        recent.pk,
    }
    event = AuditEvent.objects.get(action="telemetry.pruned")
    assert event.details["deleted"] == 4
    assert event.actor_label == "system:test"


def test_nothing_to_prune_leaves_no_audit_event(vehicle):
    _store(vehicle, 1, _noon(0))
    assert prune_telemetry(older_than=timedelta(days=30)) == 0
    assert not AuditEvent.objects.filter(action="telemetry.pruned").exists()


def test_the_partitions_command_reports_what_it_created():
    day = timezone.now().date() + timedelta(days=12)
    assert partitions.day_partition(day).name not in _day_tables()
    call_command("telemetry_partitions", "--days-ahead", "12")
    assert partitions.day_partition(day).name in _day_tables()


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_every_row_both_ways(vehicle):
    first = _store(vehicle, 1, _noon(0))
    stray = _store(vehicle, 2, datetime(2001, 1, 1, tzinfo=UTC))
    try:
        call_command("migrate", "diagnostics", "0002", verbosity=0)
        with connection.cursor() as cursor:
            assert not partitions.is_partitioned(cursor)
        assert set(TelemetrySample.objects.values_list("pk", "seq")) == {
            (first.pk, 1),
            (stray.pk, 2),
        }
        added = _store(vehicle, 3, _noon(0))
        assert added.pk > stray.pk
    finally:
        call_command("migrate", "diagnostics", verbosity=0)
    with connection.cursor() as cursor:
        assert partitions.is_partitioned(cursor)
    assert _where(first.pk) == partitions.day_partition(_noon(0).date()).name
    assert _where(stray.pk) == partitions.DEFAULT_PARTITION
    # New rows continue the numbering instead of reusing an id.
    assert _store(vehicle, 4, _noon(0)).pk > added.pk
