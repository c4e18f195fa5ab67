from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.mqtt.topics import topic_root
from firmware.services import generate_signing_key, trust_bundle_path
from pqc.catalogue import get_configuration, load_catalogue
from pqc.client import MqttTlsTunnel, PqcTlsConnection, open_connection
from pqc.http_edge import EdgeLimits
from pqc.mqtt_front import CONNECT
from pqc.pki import fingerprint
from pqc.tests.conftest import (
    MOSQUITTO,
    VIN_A,
    VIN_B,
    FleetMaterial,
    RunningListeners,
    start_listeners,
)
from pqc.tests.test_mqtt_front import connect_body, mqtt_packet
from simulator.__main__ import _parser
from simulator.reference import ReferenceVehicle, ServerAddress

# The front looks the certificate's VIN binding up in a worker thread, so the database is real.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

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
    disconnect_reason: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    got_message: threading.Event = field(default_factory=threading.Event)


def _session(
    client_id: str,
    host: str,
    port: int,
    *,
    v5: bool = False,
    will: tuple[str, bytes, bool] | None = None,
    will_properties: Properties | None = None,
    credentials: tuple[str, str] | None = None,
) -> Session:
    protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    session = Session(client=client)
    if will is not None:
        topic, payload, retain = will
        client.will_set(topic, payload, qos=1, retain=retain, properties=will_properties)
    if credentials is not None:
        client.username_pw_set(*credentials)

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        session.reason.append(reason_code)
        session.connected.set()

    def on_disconnect(c, userdata, flags, reason_code, properties) -> None:
        session.disconnect_reason.append(reason_code)
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
    session.client.subscribe(f"{topic_root()}/{VIN_B}/#", qos=1)
    assert session.subscribed.wait(WAIT)
    yield session
    _close(session)


def _watch(vin: str) -> Session:
    session = _session(f"watch-{uuid.uuid4().hex[:8]}", *MOSQUITTO)
    assert session.connected.wait(WAIT)
    session.client.subscribe(f"{topic_root()}/{vin}/#", qos=1)
    assert session.subscribed.wait(WAIT)
    return session


@pytest.fixture
def watcher_of_a() -> Iterator[Session]:
    session = _watch(VIN_A)
    yield session
    _close(session)


def _only_the_marker_arrives(watcher: Session, topic: str) -> None:
    """Send a marker straight to the broker and check it is all the watcher saw.

    Messages from one connection are delivered in order, so had the front forwarded anything
    to `topic` before, the watcher would have seen it before the marker.
    """
    marker = _session(f"marker-{uuid.uuid4().hex[:8]}", *MOSQUITTO)
    assert marker.connected.wait(WAIT)
    marker.client.publish(topic, b"marker", qos=1).wait_for_publish(WAIT)
    _close(marker)
    assert watcher.got_message.wait(WAIT)
    assert [payload for _, payload in watcher.messages] == [b"marker"]


def _topic(vin: str, kind: str) -> str:
    return f"{topic_root()}/{vin}/{kind}"


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_vehicle_publishes_its_telemetry_and_receives_its_control(
    tunnel: MqttTlsTunnel, watcher_of_a: Session, v5: bool
) -> None:
    session = _session(VIN_A, "127.0.0.1", tunnel.port, v5=v5)
    try:
        assert session.connected.wait(WAIT)
        assert session.reason[0] == 0
        session.client.subscribe(_topic(VIN_A, "control"), qos=1)
        assert session.subscribed.wait(WAIT)
        session.client.publish(_topic(VIN_A, "telemetry"), b"t", qos=1).wait_for_publish(WAIT)
        assert watcher_of_a.got_message.wait(WAIT)
        assert (_topic(VIN_A, "telemetry"), b"t") in watcher_of_a.messages

        server = _session(f"server-{uuid.uuid4().hex[:8]}", *MOSQUITTO)
        assert server.connected.wait(WAIT)
        server.client.publish(_topic(VIN_A, "control"), b"c", qos=1).wait_for_publish(WAIT)
        _close(server)
        assert session.got_message.wait(WAIT)
        assert session.messages == [(_topic(VIN_A, "control"), b"c")]
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


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize(
    ("kind", "retain"), [("control", False), ("desired-state", True), ("ota/status", False)]
)
def test_forged_will_on_another_vehicles_topic_is_refused_and_never_published(
    tunnel: MqttTlsTunnel, watcher_of_b: Session, v5: bool, kind: str, retain: bool
) -> None:
    forged = _topic(VIN_B, kind)
    session = _session(
        VIN_A, "127.0.0.1", tunnel.port, v5=v5, will=(forged, b'{"command": "activate"}', retain)
    )
    try:
        assert session.connected.wait(WAIT)
        assert session.reason[0].is_failure
        assert session.reason[0].value in {5, 0x87}
        assert session.disconnected.wait(WAIT)
    finally:
        # Dropping without DISCONNECT is what makes a broker publish a will.
        session.client.loop_stop()
        session.client.socket() and session.client.socket().close()
    _only_the_marker_arrives(watcher_of_b, forged)


def test_mqtt5_will_whose_response_topic_is_another_vehicles_is_refused(
    tunnel: MqttTlsTunnel,
) -> None:
    properties = Properties(PacketTypes.WILLMESSAGE)
    properties.ResponseTopic = _topic(VIN_B, "control")
    session = _session(
        VIN_A, "127.0.0.1", tunnel.port, v5=True,
        will=(_topic(VIN_A, "status"), b"{}", False), will_properties=properties,
    )  # fmt: skip
    try:
        assert session.connected.wait(WAIT)
        assert session.reason[0].value == 0x87
    finally:
        _close(session)


def test_vehicles_own_will_reaches_the_broker_when_it_drops(
    tunnel: MqttTlsTunnel, watcher_of_a: Session
) -> None:
    will = _topic(VIN_A, "status")
    session = _session(VIN_A, "127.0.0.1", tunnel.port, will=(will, b"offline", False))
    assert session.connected.wait(WAIT)
    assert session.reason[0] == 0
    session.client.loop_stop()
    session.client.socket().close()
    assert watcher_of_a.got_message.wait(WAIT)
    assert watcher_of_a.messages == [(will, b"offline")]


def test_publish_to_another_vehicles_topic_drops_the_connection_and_the_message(
    tunnel: MqttTlsTunnel, watcher_of_b: Session
) -> None:
    session = _session(VIN_A, "127.0.0.1", tunnel.port)
    try:
        assert session.connected.wait(WAIT)
        session.client.publish(_topic(VIN_B, "status"), b"spoofed", qos=1)
        assert session.disconnected.wait(WAIT)
    finally:
        _close(session)
    _only_the_marker_arrives(watcher_of_b, _topic(VIN_B, "status"))


@pytest.mark.parametrize(("kind", "retain"), [("control", False), ("desired-state", True),
                                              ("telemetry", True)])  # fmt: skip
def test_publish_on_its_own_server_to_vehicle_topic_or_retained_is_dropped(
    tunnel: MqttTlsTunnel, watcher_of_a: Session, kind: str, retain: bool
) -> None:
    session = _session(VIN_A, "127.0.0.1", tunnel.port, v5=True)
    try:
        assert session.connected.wait(WAIT)
        session.client.publish(_topic(VIN_A, kind), b"forged", qos=1, retain=retain)
        assert session.disconnected.wait(WAIT)
        assert session.disconnect_reason[0].value == 0x87
    finally:
        _close(session)
    _only_the_marker_arrives(watcher_of_a, _topic(VIN_A, kind))


@pytest.mark.parametrize(
    "topic_filter",
    [f"vehicle/{VIN_B}/#", "vehicle/+/control", "#", f"$share/g/vehicle/{VIN_A}/control",
     f"vehicle/{VIN_A}/#", f"vehicle/{VIN_A}/status", "$SYS/#"],
)  # fmt: skip
def test_subscribe_outside_its_own_server_to_vehicle_topics_drops_the_connection(
    tunnel: MqttTlsTunnel, topic_filter: str
) -> None:
    session = _session(VIN_A, "127.0.0.1", tunnel.port)
    try:
        assert session.connected.wait(WAIT)
        session.client.subscribe(topic_filter.replace("vehicle/", f"{topic_root()}/"), qos=0)
        assert session.disconnected.wait(WAIT)
        assert not session.subscribed.is_set()
    finally:
        _close(session)


def test_connect_carrying_broker_credentials_is_not_authorized(tunnel: MqttTlsTunnel) -> None:
    session = _session(VIN_A, "127.0.0.1", tunnel.port, credentials=("ota-bridge", "guess"))
    try:
        assert session.connected.wait(WAIT)
        assert session.reason[0].value in {5, 0x87}
    finally:
        _close(session)


def test_certificate_other_than_the_one_bound_to_the_vin_is_not_authorized(
    tunnel: MqttTlsTunnel, fleet: FleetMaterial
) -> None:
    from vehicles.models import Vehicle

    vehicle = Vehicle.objects.create(
        vin=VIN_A, model_name="Aurora", model_year=2026, certificate_fingerprint="ab" * 32
    )
    refused = _session(VIN_A, "127.0.0.1", tunnel.port)
    try:
        assert refused.connected.wait(WAIT)
        assert refused.reason[0].value in {5, 0x87}
    finally:
        _close(refused)

    cert = x509.load_pem_x509_certificate(
        fleet.credentials[(VIN_A, "ml-dsa-65")].cert.read_bytes()  # type: ignore[union-attr]
    )
    vehicle.certificate_fingerprint = fingerprint(cert)
    vehicle.save(update_fields=["certificate_fingerprint"])
    accepted = _session(VIN_A, "127.0.0.1", tunnel.port)
    try:
        assert accepted.connected.wait(WAIT)
        assert accepted.reason[0] == 0
    finally:
        _close(accepted)


@contextmanager
def _own_listeners(fleet: FleetMaterial, upstream: tuple[str, int]) -> Iterator[RunningListeners]:
    """Listeners built from the settings of this test (the session's were built before them)."""
    from pqc.server import stop_in_thread

    server = start_listeners(fleet, hook=None, mqtt_upstream=upstream, allow_classical=False)
    try:
        yield server
    finally:
        stop_in_thread(server.listeners)


def _raw_connection(server: RunningListeners, fleet: FleetMaterial) -> PqcTlsConnection:
    return open_connection(
        server.host,
        server.ports["mqtt"],
        config=get_configuration(4, load_catalogue()),
        credentials=fleet.credentials[(VIN_A, "ml-dsa-65")],
        server_hostname="localhost",
    )


def _closed_within(conn: PqcTlsConnection, limit: float) -> float:
    """Seconds until the server closed `conn`, reading (and dropping) anything it sends."""
    started = time.monotonic()
    conn.sock.settimeout(limit)
    while conn.recv():
        pass
    return time.monotonic() - started


def test_client_that_sends_no_connect_is_cut_after_the_connect_timeout(
    fleet: FleetMaterial, settings
) -> None:
    settings.OTA_MQTT_CONNECT_TIMEOUT_SECONDS = 1.0
    with _own_listeners(fleet, MOSQUITTO) as server:
        conn = _raw_connection(server, fleet)
        try:
            elapsed = _closed_within(conn, WAIT)
        finally:
            conn.close()
    assert 0.8 < elapsed < 3.0


class _SilentBroker:
    """A loopback 'broker' that accepts one CONNECT and then never closes on its own.

    A real broker cuts an idle client at 1.5 times its keep-alive too, which would hide whether
    the front does.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(WAIT)
        self.address = self.listener.getsockname()[:2]
        self.accepted = threading.Event()
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.accepted.set()
        with conn:
            conn.settimeout(WAIT)
            with contextlib.suppress(OSError):
                conn.recv(65536)
                conn.sendall(bytes([0x20, 2, 0, 0]))
                self.connected.set()
                while conn.recv(65536):
                    pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(WAIT)


def test_client_silent_past_one_and_a_half_keep_alives_is_cut(fleet: FleetMaterial) -> None:
    broker = _SilentBroker()
    try:
        with _own_listeners(fleet, broker.address) as server:
            conn = _raw_connection(server, fleet)
            try:
                conn.sendall(mqtt_packet(CONNECT, connect_body(VIN_A, keep_alive=1)))
                assert conn.recv(4) == bytes([0x20, 2, 0, 0])
                elapsed = _closed_within(conn, WAIT)
            finally:
                conn.close()
    finally:
        broker.close()
    assert broker.connected.is_set()
    assert 1.2 < elapsed < 3.0


def test_reference_vehicle_with_the_servers_topic_root_goes_online_through_the_front(
    fleet: FleetMaterial, settings, tmp_path: Path
) -> None:
    root = f"fleet-{uuid.uuid4().hex[:6]}"
    settings.MQTT_TOPIC_ROOT = root
    settings.SIGNING_KEY_DIR = tmp_path / "signing"
    generate_signing_key()
    watcher = _watch(VIN_A)
    with _own_listeners(fleet, MOSQUITTO) as server:
        vehicle = ReferenceVehicle(
            vin=VIN_A,
            server=ServerAddress(mqtt_port=server.ports["mqtt"]),
            config=get_configuration(4, load_catalogue()),
            credentials=fleet.credentials[(VIN_A, "ml-dsa-65")],
            trust_file=trust_bundle_path(),
            build_sheet=Path(settings.ECU_REGISTRY_FILE),
            state_dir=tmp_path / "vehicle",
            topic_root=root,
            telemetry_interval=60,
        ).start(register=False)
        try:
            assert watcher.got_message.wait(WAIT)
            topic, payload = watcher.messages[0]
            assert topic == f"{root}/{VIN_A}/status"
            assert json.loads(payload)["state"] == "online"
        finally:
            vehicle.stop()
            _close(watcher)
    # The presence message was retained on the broker: leave nothing behind.
    cleaner = _session(f"clean-{uuid.uuid4().hex[:8]}", *MOSQUITTO)
    assert cleaner.connected.wait(WAIT)
    cleaner.client.publish(f"{root}/{VIN_A}/status", b"", qos=1, retain=True).wait_for_publish(WAIT)
    _close(cleaner)


def test_simulator_command_line_passes_the_topic_root() -> None:
    assert _parser().parse_args(["--vin", VIN_A, "--topic-root", "fleet-7"]).topic_root == "fleet-7"
    assert _parser().parse_args(["--vin", VIN_A]).topic_root == "vehicle"


def test_default_root_is_refused_when_the_topic_root_is_moved(
    fleet: FleetMaterial, settings
) -> None:
    settings.MQTT_TOPIC_ROOT = "fleet-elsewhere"
    with _own_listeners(fleet, MOSQUITTO) as server, _tunnel_to(server, fleet) as tunnel:
        session = _session(VIN_A, "127.0.0.1", tunnel.port)
        try:
            assert session.connected.wait(WAIT)
            session.client.publish(f"vehicle/{VIN_A}/telemetry", b"{}", qos=1)
            assert session.disconnected.wait(WAIT)
        finally:
            _close(session)


@contextmanager
def _tunnel_to(server: RunningListeners, fleet: FleetMaterial) -> Iterator[MqttTlsTunnel]:
    with MqttTlsTunnel(
        host=server.host,
        port_remote=server.ports["mqtt"],
        connect={
            "config": get_configuration(4, load_catalogue()),
            "credentials": fleet.credentials[(VIN_A, "ml-dsa-65")],
            "server_hostname": "localhost",
        },
    ) as tunnel:
        yield tunnel


def _tcp_from(server: RunningListeners, source: str) -> socket.socket:
    sock = socket.create_connection((server.host, server.ports["mqtt"]), WAIT, (source, 0))
    sock.settimeout(1.0)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_mqtt_connections_are_bounded_per_address_and_in_total(fleet: FleetMaterial) -> None:
    from pqc.server import stop_in_thread

    limits = EdgeLimits(max_connections=4, max_connections_per_ip=2)
    server = start_listeners(fleet, hook=None, mqtt_upstream=MOSQUITTO, limits=limits)
    held: list[socket.socket] = []
    try:
        held += [_tcp_from(server, "127.0.0.7") for _ in range(2)]
        over_address = _tcp_from(server, "127.0.0.7")
        assert _closed_by_server(over_address)
        over_address.close()
        held += [_tcp_from(server, "127.0.0.8") for _ in range(2)]
        over_total = _tcp_from(server, "127.0.0.9")
        assert _closed_by_server(over_total)
        over_total.close()
        assert not any(_closed_by_server(sock) for sock in held)
        assert server.listeners.factories["mqtt"].counters.refused_connections == 2
    finally:
        for sock in held:
            sock.close()
        stop_in_thread(server.listeners)


def test_refused_connect_never_opens_a_broker_connection(fleet: FleetMaterial) -> None:
    broker = _SilentBroker()
    try:
        with _own_listeners(fleet, broker.address) as server:
            conn = _raw_connection(server, fleet)
            try:
                conn.sendall(mqtt_packet(CONNECT, connect_body(VIN_B)))
                assert conn.recv(4) == bytes([0x20, 2, 0, 5])
                _closed_within(conn, WAIT)
            finally:
                conn.close()
    finally:
        broker.close()
    assert not broker.accepted.is_set()


def test_a_slow_binding_lookup_holds_its_connect_but_not_the_other_vehicles(
    tunnel: MqttTlsTunnel, fleet: FleetMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vehicles import identity

    lookup_seconds = 2.0
    real_lookup = identity.certificate_speaks_for

    def slow_for_a(vin: str, cert_fingerprint: str) -> bool:
        if vin == VIN_A:
            time.sleep(lookup_seconds)
        return real_lookup(vin, cert_fingerprint)

    monkeypatch.setattr(identity, "certificate_speaks_for", slow_for_a)
    started = time.monotonic()
    slow = _session(VIN_A, "127.0.0.1", tunnel.port)
    with MqttTlsTunnel(
        host=tunnel.host,
        port_remote=tunnel.port_remote,
        connect={
            "config": get_configuration(1, load_catalogue()),
            "credentials": fleet.credentials[(VIN_B, "ecdsa-p256")],
            "server_hostname": "localhost",
        },
    ) as tunnel_b:
        other = _session(VIN_B, "127.0.0.1", tunnel_b.port)
        try:
            assert other.connected.wait(WAIT)
            assert other.reason[0] == 0
            assert not slow.connected.is_set()
            assert slow.connected.wait(WAIT)
            assert slow.reason[0] == 0
            assert time.monotonic() - started >= lookup_seconds
        finally:
            _close(other)
            _close(slow)
