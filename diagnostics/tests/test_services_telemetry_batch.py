from __future__ import annotations

import pytest
from django.db import connection

from diagnostics.models import TelemetryLatest, TelemetrySample
from diagnostics.services import record_telemetry, record_telemetry_batch
from diagnostics.services import telemetry as telemetry_service
from diagnostics.services.telemetry import VehicleKey
from diagnostics.tests.factories import telemetry

pytestmark = pytest.mark.django_db


def _key(vehicle) -> VehicleKey:
    return VehicleKey(vehicle.pk, vehicle.vin)


def test_batch_around_the_stored_latest_keeps_the_newest_value_of_each_signal(vehicle):
    record_telemetry(
        vehicle=vehicle,
        report=telemetry(vehicle.vin, seq=2, timestamp=2000, values={"speed_kph": 50, "gear": "D"}),
    )
    older = telemetry(
        vehicle.vin, seq=1, timestamp=1000, values={"speed_kph": 10, "gear": "P", "door": "open"}
    )
    newer = telemetry(vehicle.vin, seq=3, timestamp=3000, values={"speed_kph": 70})
    record_telemetry_batch(reports=[(_key(vehicle), newer), (_key(vehicle), older)])
    latest = TelemetryLatest.objects.get(vehicle=vehicle)
    assert latest.values == {"speed_kph": 70, "gear": "D", "door": "open"}
    assert latest.seq == 3
    assert latest.reported_at.timestamp() == 3000


def test_first_batch_of_several_vehicles_creates_their_latest_rows(vehicle, other_vehicle):
    reports = [
        (_key(vehicle), telemetry(vehicle.vin, seq=1, values={"gear": "R"})),
        (_key(other_vehicle), telemetry(other_vehicle.vin, seq=1, values={"gear": "N"})),
        (_key(vehicle), telemetry(vehicle.vin, seq=2, values={"speed_kph": 3})),
    ]
    assert record_telemetry_batch(reports=reports) == 3
    assert TelemetryLatest.objects.get(vehicle=vehicle).values == {"gear": "R", "speed_kph": 3}
    assert TelemetryLatest.objects.get(vehicle=other_vehicle).values == {"gear": "N"}


def test_repeats_inside_a_batch_and_across_batches_are_stored_once(vehicle):
    first = telemetry(vehicle.vin, seq=1, timestamp=1000)
    second = telemetry(vehicle.vin, seq=2, timestamp=1001)
    record_telemetry_batch(reports=[(_key(vehicle), first), (_key(vehicle), first)])
    record_telemetry_batch(reports=[(_key(vehicle), first), (_key(vehicle), second)])
    assert sorted(TelemetrySample.objects.values_list("seq", flat=True)) == [1, 2]


def test_history_keeps_values_as_json_objects(vehicle):
    values = {"gear": "Ä", "charging": True, "odometer_km": 12345.5, "fault": None}
    record_telemetry_batch(reports=[(_key(vehicle), telemetry(vehicle.vin, values=values))])
    sample = TelemetrySample.objects.get()
    assert sample.values == values
    assert TelemetrySample.objects.filter(values__charging=True).count() == 1


def test_a_failed_batch_leaves_nothing_behind_for_the_next_one(vehicle, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("latest values could not be merged")

    with monkeypatch.context() as patch:
        patch.setattr(telemetry_service, "_merge_rows", fail)
        with pytest.raises(RuntimeError):
            record_telemetry_batch(
                reports=[(_key(vehicle), telemetry(vehicle.vin, seq=s)) for s in (1, 2)]
            )
    assert not TelemetrySample.objects.exists()
    record_telemetry_batch(reports=[(_key(vehicle), telemetry(vehicle.vin, seq=3))])
    assert list(TelemetrySample.objects.values_list("seq", flat=True)) == [3]
    assert TelemetryLatest.objects.get(vehicle=vehicle).seq == 3


@pytest.mark.parametrize(("synchronous", "expected"), [(True, "on"), (False, "off")])
def test_asynchronous_commit_is_used_only_when_configured(vehicle, settings, synchronous, expected):
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is a PostgreSQL setting")
    settings.TELEMETRY_SYNCHRONOUS_COMMIT = synchronous
    record_telemetry_batch(reports=[(_key(vehicle), telemetry(vehicle.vin))])
    # SET LOCAL lasts until the end of the enclosing transaction, here the test's own.
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == expected
