from __future__ import annotations

import json

import pytest

from core.jsonlimits import MAX_JSON_DEPTH
from core.mqtt.testing import recording_publisher
from diagnostics.models import InboundDrop, TelemetryLatest, TelemetrySample
from diagnostics.services import send_control_command
from diagnostics.tests.factories import control_response, encode, telemetry
from telematics.ingest import handle_batch, handle_message

pytestmark = pytest.mark.django_db


def _data_snapshot(vehicle):
    vehicle.refresh_from_db()
    return (
        TelemetrySample.objects.count(),
        TelemetryLatest.objects.count(),
        vehicle.is_online,
        vehicle.last_seen_at,
    )


def test_telemetry_lands_in_history_and_latest_and_marks_vehicle_seen(vehicle):
    outcome = handle_message(f"vehicle/{vehicle.vin}/telemetry", encode(telemetry(vehicle.vin)))
    assert outcome == "accepted"
    vehicle.refresh_from_db()
    assert vehicle.is_online and vehicle.last_seen_at is not None
    assert TelemetrySample.objects.get().values["battery_percent"] == 80
    assert TelemetryLatest.objects.get(vehicle=vehicle).values["gear"] == "P"


def test_redelivered_telemetry_is_stored_once(vehicle):
    payload = encode(telemetry(vehicle.vin, seq=7))
    handle_message(f"vehicle/{vehicle.vin}/telemetry", payload)
    handle_message(f"vehicle/{vehicle.vin}/telemetry", payload)
    assert TelemetrySample.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (json.dumps({"vin": "x"}).encode(), "bad_schema"),
        (json.dumps([1, 2]).encode(), "bad_schema"),
        (b" " * (64 * 1024 + 1), "oversized"),
    ],
)
def test_malformed_wrong_schema_or_oversized_messages_are_dropped_and_counted(
    vehicle, payload, reason
):
    before = _data_snapshot(vehicle)
    outcome = handle_message(f"vehicle/{vehicle.vin}/telemetry", payload)
    assert outcome == f"dropped:{reason}"
    assert _data_snapshot(vehicle) == before
    assert InboundDrop.objects.get(reason=reason).count == 1


def test_telemetry_naming_another_vehicle_is_dropped(vehicle, other_vehicle):
    before = _data_snapshot(other_vehicle)
    outcome = handle_message(
        f"vehicle/{vehicle.vin}/telemetry", encode(telemetry(other_vehicle.vin))
    )
    assert outcome == "dropped:vin_mismatch"
    assert _data_snapshot(other_vehicle) == before
    assert TelemetrySample.objects.count() == 0


def test_message_from_unregistered_vehicle_is_dropped(registry):
    vin = "5YJ3E1EA7KF317000"
    outcome = handle_message(f"vehicle/{vin}/telemetry", encode(telemetry(vin)))
    assert outcome == "dropped:unknown_vehicle"
    assert TelemetrySample.objects.count() == 0


def test_topic_outside_the_tree_is_dropped(vehicle):
    assert handle_message(f"vehicle/{vehicle.vin}/secrets", b"{}") == "dropped:bad_topic"
    assert handle_message("vehicle/not-a-vin/telemetry", b"{}") == "dropped:bad_topic"


def test_last_will_marks_vehicle_offline(vehicle):
    handle_message(f"vehicle/{vehicle.vin}/status", encode({"vin": vehicle.vin, "state": "online"}))
    vehicle.refresh_from_db()
    assert vehicle.is_online
    handle_message(
        f"vehicle/{vehicle.vin}/status",
        encode({"vin": vehicle.vin, "state": "offline", "reason": "connection lost"}),
    )
    vehicle.refresh_from_db()
    assert not vehicle.is_online


def test_control_response_for_another_vehicles_command_changes_nothing(vehicle, other_vehicle):
    with recording_publisher():
        (command,) = send_control_command(vehicles=[other_vehicle], command="collect_vci")
    outcome = handle_message(
        f"vehicle/{vehicle.vin}/control/response",
        encode(control_response(vehicle.vin, command.command_id)),
    )
    assert outcome == "dropped:rejected"
    command.refresh_from_db()
    assert command.status == "sent"


def test_ota_status_goes_to_the_ota_service(vehicle, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "telematics.ingest.record_status_report",
        lambda **kwargs: calls.append(kwargs),
    )
    document = {"vin": vehicle.vin, "report_id": "r-1", "vmg_state": 1, "percentage": 10}
    assert handle_message(f"vehicle/{vehicle.vin}/ota/status", encode(document)) == "accepted"
    assert calls == [
        {
            "vehicle": vehicle,
            "report": {"report_id": "r-1", "vmg_state": 1, "percentage": 10},
            "source": "mqtt",
        }
    ]


def test_a_failing_service_is_counted_and_does_not_raise(vehicle, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("telematics.ingest.record_status_report", explode)
    document = {"vin": vehicle.vin, "report_id": "r-2"}
    assert handle_message(f"vehicle/{vehicle.vin}/ota/status", encode(document)) == "dropped:error"


def test_batch_stores_telemetry_of_many_vehicles_and_drops_bad_ones(vehicle, other_vehicle):
    messages = [
        (f"vehicle/{vehicle.vin}/telemetry", encode(telemetry(vehicle.vin, seq=i)))
        for i in range(1, 6)
    ]
    messages.append(
        (f"vehicle/{other_vehicle.vin}/telemetry", encode(telemetry(other_vehicle.vin, seq=1)))
    )
    messages.append((f"vehicle/{vehicle.vin}/telemetry", b"garbage"))
    outcomes = handle_batch(messages)
    assert outcomes == {"accepted": 6, "dropped:bad_json": 1}
    assert TelemetrySample.objects.filter(vehicle=vehicle).count() == 5
    assert TelemetryLatest.objects.get(vehicle=vehicle).seq == 5


def test_batch_write_failure_falls_back_to_one_message_at_a_time_and_loses_none(
    vehicle, monkeypatch
):
    def fail(**kwargs):
        raise RuntimeError("batch write failed")

    monkeypatch.setattr("telematics.ingest.record_telemetry_batch", fail)
    messages = [
        (f"vehicle/{vehicle.vin}/telemetry", encode(telemetry(vehicle.vin, seq=i)))
        for i in range(1, 4)
    ]
    assert handle_batch(messages) == {"accepted": 3}
    assert sorted(TelemetrySample.objects.values_list("seq", flat=True)) == [1, 2, 3]


def _deeply_nested(depth: int) -> bytes:
    return b'{"vin": "x", "values": ' + b"[" * depth + b"]" * depth + b"}"


def test_a_deeply_nested_payload_is_dropped_alone_and_the_rest_of_its_batch_is_stored(vehicle):
    topic = f"vehicle/{vehicle.vin}/telemetry"
    messages = [
        (topic, _deeply_nested(30_000)),
        (topic, encode(telemetry(vehicle.vin, seq=1))),
        (f"vehicle/{vehicle.vin}/status", _deeply_nested(30_000)),
        (topic, encode(telemetry(vehicle.vin, seq=2))),
    ]
    outcomes = handle_batch(messages)
    assert outcomes == {"accepted": 2, "dropped:too_deep": 2}
    assert sorted(TelemetrySample.objects.values_list("seq", flat=True)) == [1, 2]
    assert InboundDrop.objects.get(reason="too_deep").count == 2


def test_nesting_is_refused_before_parsing_at_the_limit(vehicle, monkeypatch):
    parsed = []
    monkeypatch.setattr("core.jsonlimits.json.loads", lambda *a, **k: parsed.append(a))
    topic = f"vehicle/{vehicle.vin}/control/response"
    assert handle_message(topic, _deeply_nested(MAX_JSON_DEPTH)) == "dropped:too_deep"
    assert parsed == []


def test_nesting_inside_strings_does_not_count(vehicle):
    document = telemetry(vehicle.vin, values={"note": "[" * 60 + "{" * 60})
    assert handle_message(f"vehicle/{vehicle.vin}/telemetry", encode(document)) == "accepted"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"seq": 2**63}, "bad_schema"),
        ({"timestamp": 10**20}, "bad_schema"),
        ({"values": {"speed_kph": float("nan")}}, "bad_json"),
        ({"values": {"speed_kph": float("inf")}}, "bad_json"),
    ],
)
def test_numbers_the_database_cannot_hold_are_dropped_at_decode(vehicle, document, reason):
    payload = encode(telemetry(vehicle.vin, **document))
    outcomes = handle_batch(
        [
            (f"vehicle/{vehicle.vin}/telemetry", payload),
            (f"vehicle/{vehicle.vin}/telemetry", encode(telemetry(vehicle.vin, seq=5))),
        ]
    )
    assert outcomes == {"accepted": 1, f"dropped:{reason}": 1}
    assert list(TelemetrySample.objects.values_list("seq", flat=True)) == [5]


def test_a_message_the_database_refuses_is_dropped_alone_from_its_batch(vehicle):
    from django.db import connection

    # PostgreSQL's jsonb cannot hold a NUL character; SQLite stores it. Either way the other
    # messages of the batch are stored and the outcome of every message is counted.
    topic = f"vehicle/{vehicle.vin}/telemetry"
    messages = [
        (topic, encode(telemetry(vehicle.vin, seq=1))),
        (topic, encode(telemetry(vehicle.vin, seq=2, values={"note": "nul\u0000"}))),
        (topic, encode(telemetry(vehicle.vin, seq=3))),
    ]
    outcomes = handle_batch(messages)
    stored = sorted(TelemetrySample.objects.values_list("seq", flat=True))
    if connection.vendor == "postgresql":
        assert outcomes == {"accepted": 2, "dropped:store_failed": 1}
        assert stored == [1, 3]
        assert InboundDrop.objects.get(reason="store_failed").count == 1
    else:
        assert outcomes == {"accepted": 3}
        assert stored == [1, 2, 3]


def test_a_time_past_the_calendar_is_rejected_alone_from_its_batch(vehicle):
    topic = f"vehicle/{vehicle.vin}/telemetry"
    late = telemetry(vehicle.vin, seq=1, timestamp="0001-01-01T00:00:00+01:00")
    outcomes = handle_batch([(topic, encode(late)), (topic, encode(telemetry(vehicle.vin, seq=2)))])
    assert outcomes == {"accepted": 1, "dropped:rejected": 1}
    assert list(TelemetrySample.objects.values_list("seq", flat=True)) == [2]
