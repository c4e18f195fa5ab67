"""The embedded broker of a one-command run, its logins and topic rights, and the bridge on it."""

from __future__ import annotations

import asyncio
import queue
import stat
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from core.mqtt import broker
from core.mqtt.connection import CREDENTIALS_FILE, broker_address
from core.mqtt.testing_broker import (
    close_probe,
    connect_probe,
    free_port,
    reachable,
    sqlite_readers_do_not_lock,
    wait_for,
)
from telematics.testing import running_bridge

pytestmark = pytest.mark.slow


def test_start_does_nothing_when_an_external_broker_is_configured(settings):
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    stop = threading.Event()
    started = time.monotonic()
    broker.start(stop)  # returns at once instead of serving until stopped
    assert time.monotonic() - started < 5


VIN_A = "WVWZZZ1JZXW000001"
VIN_B = "WVWZZZ1JZXW000002"


@pytest.fixture
def embedded_broker(settings, tmp_path):
    port = free_port()
    settings.VAR_DIR = tmp_path
    settings.MQTT_URL = None
    settings.MQTT_EMBEDDED_PORT = port
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(broker.serve(port, stop, ready)), daemon=True
    )
    thread.start()
    assert ready.wait(10), "embedded broker did not start"
    yield port
    stop.set()
    thread.join(10)
    assert not reachable(f"mqtt://127.0.0.1:{port}")


def test_embedded_broker_generates_one_private_password_per_role(embedded_broker, settings):
    credentials = settings.VAR_DIR / CREDENTIALS_FILE
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    bridge, front = broker_address("bridge"), broker_address("front")
    assert (bridge.username, front.username) == ("bridge", "front")
    assert bridge.password and front.password and bridge.password != front.password


@pytest.mark.parametrize(
    "login",
    [(None, None), ("bridge", "wrong"), ("nobody", "x"), ("front", None)],
    ids=["anonymous", "wrong-password", "unknown-user", "no-password"],
)
def test_embedded_broker_refuses_clients_without_a_valid_login(embedded_broker, login):
    username, password = login
    client, reason = connect_probe(
        embedded_broker,
        client_id=VIN_A,
        username=username,
        password=password,
        protocol=mqtt.MQTTv311,
    )
    close_probe(client)
    assert reason.is_failure


def _login(port: int, role: str, client_id: str) -> mqtt.Client:
    address = broker_address(role)
    client, reason = connect_probe(
        port,
        client_id=client_id,
        username=address.username,
        password=address.password,
        protocol=mqtt.MQTTv311,
    )
    assert not reason.is_failure, reason
    return client


def test_each_principal_gets_only_the_topics_its_job_needs(embedded_broker):
    bridge = _login(embedded_broker, "bridge", "ota-bridge-probe")
    front = _login(embedded_broker, "front", VIN_A)
    inbound, outbound = queue.Queue(), queue.Queue()
    bridge.on_message = lambda c, u, m: inbound.put(m.topic)
    front.on_message = lambda c, u, m: outbound.put(m.topic)
    try:
        granted = queue.Queue()
        bridge.on_subscribe = front.on_subscribe = lambda c, u, mid, codes, p: granted.put(codes)
        bridge.subscribe("vehicle/+/telemetry", qos=1)
        assert not granted.get(timeout=5)[0].is_failure
        front.subscribe(f"vehicle/{VIN_A}/control", qos=1)
        assert not granted.get(timeout=5)[0].is_failure
        # The front's connection for VIN_A can neither eavesdrop on the fleet nor on VIN_B.
        for stolen in ("#", "vehicle/+/control", f"vehicle/{VIN_B}/control"):
            front.subscribe(stolen, qos=1)
            assert granted.get(timeout=5)[0].is_failure, stolen
        # Nor can it publish as VIN_B: only its own message reaches the bridge.
        front.publish(f"vehicle/{VIN_B}/telemetry", b"{}", qos=1).wait_for_publish(5)
        front.publish(f"vehicle/{VIN_A}/telemetry", b"{}", qos=1).wait_for_publish(5)
        assert inbound.get(timeout=5) == f"vehicle/{VIN_A}/telemetry"
        # The bridge reaches the vehicle on its server-to-vehicle topic, and nowhere else.
        bridge.publish(f"vehicle/{VIN_A}/telemetry", b"{}", qos=1).wait_for_publish(5)
        bridge.publish(f"vehicle/{VIN_A}/control", b"{}", qos=1).wait_for_publish(5)
        assert outbound.get(timeout=5) == f"vehicle/{VIN_A}/control"
        time.sleep(0.5)
        assert inbound.empty() and outbound.empty()
    finally:
        close_probe(front)
        close_probe(bridge)


@pytest.mark.django_db(transaction=True)
def test_bridge_on_the_embedded_broker_stores_telemetry(embedded_broker, vehicle):
    sqlite_readers_do_not_lock()
    from diagnostics.models import TelemetrySample
    from simulator.vehicle import SimulatedVehicle, VehicleConfig

    with running_bridge() as bridge:
        assert bridge.shared is False  # amqtt speaks MQTT 3.1.1: no shared subscriptions
        sim = SimulatedVehicle(
            VehicleConfig(vin=vehicle.vin, port=embedded_broker, protocol=mqtt.MQTTv311)
        )
        # In a run the vehicle's connection reaches the broker through the front's login.
        front = broker_address("front")
        sim.client.username_pw_set(front.username, front.password)
        sim.start()
        try:
            assert sim.connected.wait(10)
            for _ in range(5):
                sim.send_telemetry(speed_kph=5)
            wait_for(lambda: TelemetrySample.objects.filter(vehicle=vehicle).count() == 5)
        finally:
            sim.stop(graceful=False)
