"""The embedded broker of a one-command run, and the bridge on it (MQTT 3.1.1, plain subscriptions)."""

from __future__ import annotations

import asyncio
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from core.mqtt import broker
from core.mqtt.testing_broker import (
    free_port,
    reachable,
    running_bridge,
    sqlite_readers_do_not_lock,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_start_does_nothing_when_an_external_broker_is_configured(settings):
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    stop = threading.Event()
    started = time.monotonic()
    broker.start(stop)  # returns at once instead of serving until stopped
    assert time.monotonic() - started < 5


@pytest.fixture
def embedded_broker(settings):
    port = free_port()
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


def test_embedded_broker_relays_qos1_messages_and_stops(embedded_broker):
    received = []
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="probe", protocol=mqtt.MQTTv311
    )
    client.on_message = lambda c, u, m: received.append(m.payload)
    client.connect("127.0.0.1", embedded_broker)
    client.loop_start()
    client.subscribe("probe/topic", qos=1)
    time.sleep(0.3)
    client.publish("probe/topic", b"hello", qos=1).wait_for_publish(5)
    wait_for(lambda: received == [b"hello"], timeout=5)
    client.loop_stop()
    client.disconnect()


@pytest.mark.django_db(transaction=True)
def test_bridge_on_the_embedded_broker_stores_telemetry(embedded_broker, vehicle):
    sqlite_readers_do_not_lock()
    from diagnostics.models import TelemetrySample
    from simulator.vehicle import SimulatedVehicle, VehicleConfig

    with running_bridge() as bridge:
        assert bridge.shared is False  # amqtt speaks MQTT 3.1.1: no shared subscriptions
        sim = SimulatedVehicle(
            VehicleConfig(vin=vehicle.vin, port=embedded_broker, protocol=mqtt.MQTTv311)
        ).start()
        try:
            assert sim.connected.wait(10)
            for _ in range(5):
                sim.send_telemetry(speed_kph=5)
            wait_for(lambda: TelemetrySample.objects.filter(vehicle=vehicle).count() == 5)
        finally:
            sim.stop(graceful=False)
