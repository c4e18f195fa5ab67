"""Telemetry, OTA status, control and diagnostics through a real broker, bridge and worker."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from core.mqtt.testing_broker import (
    TEST_BROKER_URL,
    PrivateMosquitto,
    reachable,
    real_publisher,
    sqlite_readers_do_not_lock,
    wait_for,
)
from diagnostics.models import (
    ControlCommand,
    DiagnosticRequest,
    InboundDrop,
    TelemetryLatest,
    TelemetrySample,
)
from diagnostics.services import send_control_command, send_diagnostic_request
from simulator.vehicle import SimulatedVehicle, VehicleConfig
from telematics.testing import running_bridge

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _readers_do_not_lock_writers() -> None:
    sqlite_readers_do_not_lock()


@pytest.fixture
def vehicle(registry):
    """A vehicle with a VIN of this run alone: the VIN is the MQTT client id on a shared broker,
    and two runs connecting with one client id would take each other's connection."""
    from vehicles.services import register_vehicle

    vin = "TEST" + "".join(random.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(13))
    return register_vehicle(vin=vin, model_name="Aurora", model_year=2026)


@pytest.fixture
def topic_root(settings) -> str:
    """A topic tree of this test alone, so parallel runs on the shared broker never meet."""
    if not reachable(TEST_BROKER_URL):
        pytest.fail(f"no MQTT broker at {TEST_BROKER_URL} (set MQTT_URL)")
    settings.MQTT_URL = TEST_BROKER_URL
    settings.MQTT_TOPIC_ROOT = f"test-{uuid.uuid4().hex[:12]}/vehicle"
    return settings.MQTT_TOPIC_ROOT


@pytest.fixture
def bridge(topic_root):
    with real_publisher(), running_bridge() as running:
        yield running


def _simulator(vin: str, root: str, url: str = TEST_BROKER_URL, **config) -> SimulatedVehicle:
    port = int(url.rsplit(":", 1)[1])
    sim = SimulatedVehicle(VehicleConfig(vin=vin, port=port, topic_root=root, **config)).start()
    assert sim.connected.wait(10), "simulated vehicle did not connect"
    return sim


@pytest.fixture
def simulator(vehicle, topic_root, bridge) -> Iterator[SimulatedVehicle]:
    sim = _simulator(vehicle.vin, topic_root, answer_rule="odd")
    # The vehicle's "online" message is handled before the test writes anything.
    wait_for(lambda: _refreshed(vehicle).is_online)
    yield sim
    sim.stop(graceful=False)


def test_vehicle_telemetry_presence_and_ota_status_reach_the_database(vehicle, simulator):
    from ota.models import OtaUpdate

    update = OtaUpdate.objects.create(vehicle=vehicle)
    wait_for(lambda: _refreshed(vehicle).is_online)
    for _ in range(3):
        simulator.send_telemetry(battery_percent=77, speed_kph=12.5)
    simulator.send_ota_status(update_id=update.pk, vmg_state=1, percentage=40)
    wait_for(lambda: TelemetrySample.objects.filter(vehicle=vehicle).count() == 3)
    assert TelemetryLatest.objects.get(vehicle=vehicle).values == {
        "battery_percent": 77,
        "speed_kph": 12.5,
    }
    wait_for(lambda: OtaUpdate.objects.get(pk=update.pk).state == "downloading")
    assert OtaUpdate.objects.get(pk=update.pk).progress_percent == 40
    # Losing the connection without DISCONNECT makes the broker publish the last will
    # (the network loop stops first so that the vehicle does not reconnect at once).
    simulator.client.loop_stop()
    simulator.client.socket().close()
    wait_for(lambda: not _refreshed(vehicle).is_online)


def test_zone_request_is_answered_by_some_ecus_and_times_out_for_the_others(
    vehicle, simulator, fleet_operator
):
    request = send_diagnostic_request(
        vehicle=vehicle,
        service=0x22,
        params={"dids": [0xF190]},
        zone="ZGW_FRONT",
        requested_by=fleet_operator,
        timeout_ms=1500,
    )
    final = wait_for(
        lambda: DiagnosticRequest.objects.filter(pk=request.pk, status="partial").first()
    )
    outcomes = {r.ecu.ecu_id: r for r in final.results.select_related("ecu")}
    for ecu_id, result in outcomes.items():
        if int(ecu_id[-3:]) % 2:
            assert result.outcome == "positive", ecu_id
            assert result.decoded["text"] == vehicle.vin
        else:
            assert result.outcome == "timeout", ecu_id
    assert final.duration_ms >= 1500


def test_control_command_is_acknowledged_and_completed(vehicle, simulator, fleet_operator):
    (command,) = send_control_command(
        vehicles=[vehicle], command="collect_readiness", issued_by=fleet_operator, timeout_s=20
    )
    done = wait_for(
        lambda: ControlCommand.objects.filter(pk=command.pk, status="completed").first()
    )
    assert done.acknowledged_at is not None
    assert done.result["ready_for_ota"] is True


def test_bad_messages_change_nothing_and_are_counted(vehicle, other_vehicle, topic_root, bridge):
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=vehicle.vin, protocol=mqtt.MQTTv5
    )
    client.connect("127.0.0.1", int(TEST_BROKER_URL.rsplit(":", 1)[1]))
    client.loop_start()
    mine = f"{topic_root}/{vehicle.vin}/telemetry"
    theirs = f"{topic_root}/{other_vehicle.vin}/telemetry"
    good = {"vin": vehicle.vin, "seq": 1, "timestamp": 1_700_000_000, "values": {"speed_kph": 1}}
    for topic, payload in [
        (mine, b"{definitely not json"),
        (mine, json.dumps({"vin": vehicle.vin, "seq": "one"}).encode()),
        (mine, json.dumps({**good, "values": {"x": "y" * 70_000}}).encode()),
        (theirs, json.dumps(good).encode()),
        (
            f"{topic_root}/{other_vehicle.vin}/ota/status",
            json.dumps({"vin": vehicle.vin, "report_id": "x"}).encode(),
        ),
    ]:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    # A valid message last: once it is stored, everything before it has been handled.
    client.publish(mine, json.dumps(good).encode(), qos=1).wait_for_publish(5)
    wait_for(lambda: TelemetrySample.objects.filter(vehicle=vehicle).exists())
    client.loop_stop()
    client.disconnect()
    assert TelemetrySample.objects.count() == 1
    assert not TelemetryLatest.objects.filter(vehicle=other_vehicle).exists()
    assert not _refreshed(other_vehicle).is_online
    drops = dict(InboundDrop.objects.values_list("reason", "count"))
    assert drops == {"bad_json": 1, "bad_schema": 1, "oversized": 1, "vin_mismatch": 2}


def test_broker_restart_in_the_middle_of_a_flow_loses_no_qos1_message(vehicle, settings):
    broker = PrivateMosquitto()
    broker.start()
    settings.MQTT_URL = broker.url
    settings.MQTT_TOPIC_ROOT = "vehicle"
    sim = None
    try:
        # Mosquitto 2.0 does not restore shared subscriptions from its persistence file, so a
        # bridge that must survive a Mosquitto restart subscribes plainly (docs/PROTOCOL.md).
        with running_bridge(shared=False) as bridge:
            sim = _simulator(vehicle.vin, "vehicle", broker.url)
            for _ in range(50):
                sim.send_telemetry(speed_kph=1)
            broker.stop()
            # The vehicle keeps publishing while the broker is down: paho queues QoS 1.
            for _ in range(50):
                sim.send_telemetry(speed_kph=2)
            broker.start()
            wait_for(
                lambda: TelemetrySample.objects.filter(vehicle=vehicle).count() == 100, timeout=60
            )
            assert bridge.stats.connects >= 2
        seqs = sorted(TelemetrySample.objects.values_list("seq", flat=True))
        assert seqs == list(range(1, 101))
    finally:
        if sim is not None:
            sim.stop(graceful=False)
        broker.cleanup()


def test_two_bridges_share_the_stream_and_store_every_message_once(vehicle, topic_root):
    with real_publisher(), running_bridge() as first, running_bridge() as second:
        sim = _simulator(vehicle.vin, topic_root)
        try:
            for _ in range(60):
                sim.send_telemetry(speed_kph=3)
            wait_for(lambda: TelemetrySample.objects.filter(vehicle=vehicle).count() == 60)
        finally:
            sim.stop(graceful=False)
        assert first.stats.received > 0 and second.stats.received > 0
        assert first.stats.received + second.stats.received == 60 + 1  # + the "online" status


def _refreshed(obj):
    obj.refresh_from_db()
    return obj
