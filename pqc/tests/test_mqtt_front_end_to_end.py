from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pqc.catalogue import get_configuration, load_catalogue
from pqc.client import MqttTlsTunnel
from pqc.tests.conftest import MOSQUITTO, VIN_A, VIN_B, FleetMaterial, RunningListeners

pytestmark = pytest.mark.slow

WAIT = 10.0


def _mosquitto_up() -> bool:
    try:
        socket.create_connection(MOSQUITTO, timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(autouse=True)
def _needs_mosquitto() -> None:
    if not _mosquitto_up():
        # CI starts Mosquitto, so there a missing broker is a failure, not a reason to skip.
        if os.environ.get("CI"):
            pytest.fail(f"no MQTT broker at {MOSQUITTO} although CI starts one")
        pytest.skip(f"needs an MQTT broker at {MOSQUITTO} (MQTT_URL; the front's upstream here)")


@dataclass
class Session:
    client: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)
    reason: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    got_message: threading.Event = field(default_factory=threading.Event)


def _session(client_id: str, host: str, port: int, *, v5: bool = False) -> Session:
    protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    session = Session(client=client)

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        session.reason.append(reason_code)
        session.connected.set()

    def on_disconnect(c, userdata, flags, reason_code, properties) -> None:
        session.disconnected.set()

    def on_message(c, userdata, message) -> None:
        session.messages.append((message.topic, message.payload))
        session.got_message.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.on_subscribe = lambda *args: session.subscribed.set()
    client.connect(host, port, keepalive=30)
    client.loop_start()
    return session


def _close(session: Session) -> None:
    session.client.disconnect()
    session.client.loop_stop()


@pytest.fixture
def tunnel(running: RunningListeners, fleet: FleetMaterial) -> Iterator[MqttTlsTunnel]:
    """Vehicle A's PQC-TLS path to the front (ML-KEM-768 + ML-DSA-65)."""
    with MqttTlsTunnel(
        host=running.host,
        port_remote=running.ports["mqtt"],
        connect={
            "config": get_configuration(4, load_catalogue()),
            "credentials": fleet.credentials[(VIN_A, "ml-dsa-65")],
            "server_hostname": "localhost",
        },
    ) as t:
        yield t


@pytest.fixture
def watcher_of_b() -> Iterator[Session]:
    """A plain subscriber on the broker itself, watching vehicle B's topics."""
    session = _session(f"watch-{uuid.uuid4().hex[:8]}", *MOSQUITTO)
    assert session.connected.wait(WAIT)
    session.client.subscribe(f"vehicle/{VIN_B}/#", qos=1)
    assert session.subscribed.wait(WAIT)
    yield session
    _close(session)


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_vehicle_publishes_and_subscribes_under_its_own_vin(
    tunnel: MqttTlsTunnel, v5: bool
) -> None:
    session = _session(VIN_A, "127.0.0.1", tunnel.port, v5=v5)
    try:
        assert session.connected.wait(WAIT)
        assert session.reason[0] == 0
        session.client.subscribe(f"vehicle/{VIN_A}/commands", qos=1)
        assert session.subscribed.wait(WAIT)
        session.client.publish(f"vehicle/{VIN_A}/commands", b"ping", qos=1)
        assert session.got_message.wait(WAIT)
        assert session.messages == [(f"vehicle/{VIN_A}/commands", b"ping")]
    finally:
        _close(session)


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_connect_with_another_vehicles_client_id_is_not_authorized(
    tunnel: MqttTlsTunnel, v5: bool
) -> None:
    session = _session(VIN_B, "127.0.0.1", tunnel.port, v5=v5)
    try:
        assert session.connected.wait(WAIT)
        assert session.reason[0].is_failure
        assert session.reason[0].value in {5, 0x87}
        assert session.disconnected.wait(WAIT)
    finally:
        _close(session)


def test_publish_to_another_vehicles_topic_drops_the_connection_and_the_message(
    tunnel: MqttTlsTunnel, watcher_of_b: Session
) -> None:
    session = _session(VIN_A, "127.0.0.1", tunnel.port)
    try:
        assert session.connected.wait(WAIT)
        session.client.publish(f"vehicle/{VIN_B}/status", b"spoofed", qos=1)
        assert session.disconnected.wait(WAIT)
        # A marker sent straight to the broker afterwards arrives, so the watcher would have
        # seen the spoofed message first had the front forwarded it.
        marker = _session(f"marker-{uuid.uuid4().hex[:8]}", *MOSQUITTO)
        assert marker.connected.wait(WAIT)
        marker.client.publish(f"vehicle/{VIN_B}/status", b"marker", qos=1).wait_for_publish(WAIT)
        _close(marker)
        assert watcher_of_b.got_message.wait(WAIT)
        assert [payload for _, payload in watcher_of_b.messages] == [b"marker"]
    finally:
        _close(session)


@pytest.mark.parametrize(
    "topic_filter", [f"vehicle/{VIN_B}/#", "vehicle/+/commands", "#", f"$share/g/vehicle/{VIN_A}/#"]
)
def test_subscribe_outside_its_own_tree_drops_the_connection(
    tunnel: MqttTlsTunnel, topic_filter: str
) -> None:
    session = _session(VIN_A, "127.0.0.1", tunnel.port)
    try:
        assert session.connected.wait(WAIT)
        session.client.subscribe(topic_filter, qos=0)
        assert session.disconnected.wait(WAIT)
        assert not session.subscribed.is_set()
    finally:
        _close(session)
