"""config/mosquitto: the password file generator and the ACL, on a real Mosquitto."""

from __future__ import annotations

import queue
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from django.conf import settings

from core.mqtt.testing_broker import PrivateMosquitto, close_probe, connect_probe

pytestmark = pytest.mark.slow

CONFIG = settings.BASE_DIR / "config" / "mosquitto"
VIN_A = "WVWZZZ1JZXW000001"
VIN_B = "WVWZZZ1JZXW000002"


@pytest.fixture
def secured_broker(tmp_path):
    subprocess.run(
        ["bash", CONFIG / "make-passwords", tmp_path / "secrets"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    broker = PrivateMosquitto(
        password_file=tmp_path / "secrets" / "passwd", acl_file=CONFIG / "acl"
    )
    broker.start()
    try:
        yield broker, tmp_path / "secrets"
    finally:
        broker.cleanup()


def _login(broker, secrets, role: str, client_id: str) -> mqtt.Client:
    password = (secrets / f"{role}.password").read_text()
    client, reason = connect_probe(
        broker.port, client_id=client_id, username=role, password=password
    )
    assert not reason.is_failure, reason
    return client


def _drain(messages: queue.Queue) -> set[str]:
    seen = set()
    while not messages.empty():
        seen.add(messages.get_nowait())
    return seen


def test_generated_password_files_are_private(secured_broker):
    _, secrets = secured_broker
    for name in ("passwd", "bridge.password", "front.password"):
        assert (secrets / name).stat().st_mode & 0o077 == 0, name


@pytest.mark.parametrize("login", [(None, None), ("bridge", "wrong"), ("admin", "admin")], ids=str)
def test_mosquitto_refuses_clients_without_a_valid_login(secured_broker, login):
    broker, _ = secured_broker
    client, reason = connect_probe(
        broker.port, client_id=VIN_A, username=login[0], password=login[1]
    )
    close_probe(client)
    assert reason.is_failure


def test_acl_gives_the_bridge_and_each_vehicle_exactly_their_topics(secured_broker):
    broker, secrets = secured_broker
    bridge = _login(broker, secrets, "bridge", "ota-bridge-acl-0")
    front = _login(broker, secrets, "front", VIN_A)
    inbound, outbound, granted = queue.Queue(), queue.Queue(), queue.Queue()
    bridge.on_message = lambda c, u, m: inbound.put(m.topic)
    front.on_message = lambda c, u, m: outbound.put(m.topic)
    bridge.on_subscribe = front.on_subscribe = lambda c, u, mid, codes, p: granted.put(codes)
    try:
        bridge.subscribe("$share/ota-bridge/vehicle/+/telemetry", qos=1)
        assert not granted.get(timeout=5)[0].is_failure
        # Mosquitto grants wildcard subscriptions and checks each delivery against the ACL.
        for wanted in (f"vehicle/{VIN_A}/control", "#", f"vehicle/{VIN_B}/control"):
            front.subscribe(wanted, qos=1)
            granted.get(timeout=5)
        # Vehicle A cannot speak for vehicle B; its own telemetry reaches the bridge.
        front.publish(f"vehicle/{VIN_B}/telemetry", b"{}", qos=1).wait_for_publish(5)
        front.publish(f"vehicle/{VIN_A}/telemetry", b"{}", qos=1).wait_for_publish(5)
        # The bridge cannot forge telemetry; each vehicle hears only its own commands.
        bridge.publish(f"vehicle/{VIN_A}/telemetry", b"{}", qos=1).wait_for_publish(5)
        bridge.publish(f"vehicle/{VIN_B}/control", b"{}", qos=1).wait_for_publish(5)
        bridge.publish(f"vehicle/{VIN_A}/control", b"{}", qos=1).wait_for_publish(5)
        time.sleep(1.0)
        assert _drain(inbound) == {f"vehicle/{VIN_A}/telemetry"}
        assert _drain(outbound) == {f"vehicle/{VIN_A}/control"}
    finally:
        close_probe(front)
        close_probe(bridge)
