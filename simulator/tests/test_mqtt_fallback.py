"""The vehicle falls back to MQTT 3.1.1 by itself when the broker refuses MQTT 5."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from core.mqtt.testing_broker import free_port
from simulator.vehicle import VehicleConfig, start_vehicle

VIN = "WVWZZZ1JZ3W386752"


@pytest.fixture
def mqtt311_broker() -> Iterator[int]:
    """amqtt, the embedded broker's engine, which speaks MQTT 3.1.1 only: it drops an MQTT 5
    CONNECT without a CONNACK."""
    from amqtt.broker import Broker

    port = free_port()
    stop, ready = threading.Event(), threading.Event()

    async def serve() -> None:
        broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )
        await broker.start()
        ready.set()
        try:
            while not stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            await broker.shutdown()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(10), "broker did not start"
    yield port
    stop.set()
    thread.join(10)


def test_mqtt5_refused_falls_back_to_mqtt311(mqtt311_broker, caplog) -> None:
    config = VehicleConfig(vin=VIN, port=mqtt311_broker, protocol=mqtt.MQTTv5)
    vehicle = start_vehicle(config, connect_timeout=10)
    try:
        assert vehicle.connected.is_set()
        assert vehicle.config.protocol == mqtt.MQTTv311
        assert "MQTT 5 refused" in caplog.text
        assert "falling back to MQTT 3.1.1" in caplog.text
    finally:
        vehicle.stop()


def test_mqtt311_asked_for_connects_directly(mqtt311_broker, caplog) -> None:
    config = VehicleConfig(vin=VIN, port=mqtt311_broker, protocol=mqtt.MQTTv311)
    vehicle = start_vehicle(config, connect_timeout=10)
    try:
        assert vehicle.connected.is_set()
        assert "falling back" not in caplog.text
    finally:
        vehicle.stop()


def test_no_broker_is_one_line_naming_both_attempts() -> None:
    config = VehicleConfig(vin=VIN, port=free_port(), protocol=mqtt.MQTTv5)
    with pytest.raises(ConnectionError) as refused:
        start_vehicle(config, connect_timeout=3)
    message = str(refused.value)
    assert message.startswith(f"no MQTT session at 127.0.0.1:{config.port}: ")
    assert "\n" not in message
