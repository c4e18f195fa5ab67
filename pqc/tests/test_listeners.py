from __future__ import annotations

import pytest

from pqc.catalogue import load_catalogue
from pqc.client import ClientCredentials, TlsRefused, https_request, open_connection
from pqc.pki import FleetPki
from pqc.tests.conftest import VIN_A, VIN_B, FleetMaterial, RunningListeners, expired_validity

# Django serves the requests on the reactor's worker threads, which only see committed rows.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CATALOGUE = load_catalogue()
PQC_CONFIGS = [c for c in CATALOGUE if not c.classical]


def _whoami(running: RunningListeners, credentials: ClientCredentials, config_id: int = 1):
    config = next(c for c in CATALOGUE if c.id == config_id)
    return https_request(
        running.host,
        running.ports["vehicle"],
        "GET",
        "/api/v1/tls/whoami/",
        config=config,
        credentials=credentials,
        server_hostname="localhost",
    )


@pytest.mark.parametrize("config", PQC_CONFIGS, ids=lambda c: f"{c.id}-{c.group}-{c.signature}")
@pytest.mark.parametrize("listener", ["vehicle", "mqtt"])
def test_client_restricted_to_one_configuration_negotiates_exactly_it(
    running: RunningListeners, fleet: FleetMaterial, config, listener: str
) -> None:
    credentials = fleet.credentials[(VIN_A, config.signature)]
    with open_connection(
        running.host,
        running.ports[listener],
        config=config,
        credentials=credentials,
        server_hostname="localhost",
    ) as conn:
        assert conn.info is not None
        assert conn.info.version == "TLSv1.3"
        assert conn.info.group == config.group
        assert conn.info.peer_key_type == config.signature
        assert conn.info.signature_algorithm == config.signature_algorithm


@pytest.mark.parametrize("config", PQC_CONFIGS, ids=lambda c: f"{c.id}-{c.group}-{c.signature}")
def test_vehicle_api_sees_the_negotiated_configuration_and_vin(
    running: RunningListeners, fleet: FleetMaterial, config
) -> None:
    response = _whoami(running, fleet.credentials[(VIN_A, config.signature)], config.id)

    assert response.status == 200
    body = response.json()
    assert body["vin"] == VIN_A
    assert body["group"] == config.group
    assert body["signature_algorithm"] == config.signature_algorithm
    assert body["version"] == "TLSv1.3"
    assert body["cipher"] == response.tls.cipher


def test_console_accepts_a_server_only_handshake_with_an_ecdsa_certificate(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    config = next(c for c in CATALOGUE if c.group == "X25519MLKEM768")
    response = https_request(
        running.host,
        running.ports["console"],
        "GET",
        "/admin/login/",
        groups=[config.group],
        sigalgs=["ecdsa_secp256r1_sha256"],
        credentials=ClientCredentials(ca=fleet.pki.ca_bundle_path),
        server_hostname="localhost",
    )
    assert response.status == 200
    assert response.tls.peer_key_type == "ecdsa-p256"
    assert response.tls.group == "X25519MLKEM768"


def test_console_never_exposes_a_vehicle_identity(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    response = https_request(
        running.host,
        running.ports["console"],
        "GET",
        "/api/v1/tls/whoami/",
        config=CATALOGUE[1],
        credentials=fleet.credentials[(VIN_A, "ecdsa-p256")],
        server_hostname="localhost",
    )
    # The vehicle-only routes do not exist on the console listener.
    assert response.status == 404


@pytest.mark.parametrize("listener", ["vehicle", "console", "mqtt"])
def test_x25519_only_client_is_refused_when_classical_is_forbidden(
    running: RunningListeners, fleet: FleetMaterial, listener: str
) -> None:
    classical = next(c for c in CATALOGUE if c.classical)
    with pytest.raises(TlsRefused):
        open_connection(
            running.host,
            running.ports[listener],
            config=classical,
            credentials=fleet.credentials[(VIN_A, "ecdsa-p256")],
            server_hostname="localhost",
        )


def test_classical_baseline_is_accepted_when_explicitly_allowed(fleet: FleetMaterial) -> None:
    from pqc.server import stop_in_thread
    from pqc.tests.conftest import MOSQUITTO, start_listeners

    server = start_listeners(fleet, hook=None, mqtt_upstream=MOSQUITTO, allow_classical=True)
    try:
        classical = next(c for c in CATALOGUE if c.classical)
        with open_connection(
            server.host,
            server.ports["vehicle"],
            config=classical,
            credentials=fleet.credentials[(VIN_A, "ecdsa-p256")],
            server_hostname="localhost",
        ) as conn:
            assert conn.info.group == "x25519"
    finally:
        stop_in_thread(server.listeners)


@pytest.mark.parametrize("listener", ["vehicle", "mqtt"])
def test_client_without_certificate_is_refused(
    running: RunningListeners, fleet: FleetMaterial, listener: str
) -> None:
    with pytest.raises(TlsRefused, match="certificate required"):
        _whoami_on(running, listener, ClientCredentials(ca=fleet.pki.ca_bundle_path))


def _whoami_on(running: RunningListeners, listener: str, credentials: ClientCredentials) -> None:
    """Send bytes and read: in TLS 1.3 a refused client certificate surfaces on first read."""
    with open_connection(
        running.host,
        running.ports[listener],
        config=CATALOGUE[1],
        credentials=credentials,
        server_hostname="localhost",
    ) as conn:
        conn.sendall(b"GET /api/v1/tls/whoami/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = conn.recv()
        if not data:
            raise TlsRefused("closed without a response")


def test_certificate_from_a_foreign_ca_is_refused(
    running: RunningListeners, fleet: FleetMaterial, tmp_path
) -> None:
    foreign = FleetPki(tmp_path / "foreign")
    foreign.init(families=["ecdsa-p256"])
    credentials = fleet.issue(VIN_A, name="foreign", pki=foreign)
    with pytest.raises(TlsRefused, match="unknown ca"):
        _whoami(running, credentials)


def test_expired_certificate_is_refused(running: RunningListeners, fleet: FleetMaterial) -> None:
    credentials = fleet.issue(VIN_A, name="expired", **expired_validity())
    with pytest.raises(TlsRefused, match="certificate expired"):
        _whoami(running, credentials)


def test_revoked_certificate_is_refused_from_the_next_handshake(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    credentials = fleet.issue(VIN_A, name="to-revoke")
    assert _whoami(running, credentials).status == 200

    fleet.pki.revoke(fleet.serial_of(credentials))

    with pytest.raises(TlsRefused, match="certificate revoked"):
        _whoami(running, credentials)
    assert _whoami(running, fleet.credentials[(VIN_A, "ecdsa-p256")]).status == 200


def test_one_vehicle_cannot_read_another_vehicles_session_over_https(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    from vehicles.models import Vehicle

    Vehicle.objects.create(vin=VIN_A, model_name="Aurora", model_year=2026)
    Vehicle.objects.create(vin=VIN_B, model_name="Aurora", model_year=2026)
    credentials = fleet.credentials[(VIN_A, "ecdsa-p256")]

    def get(vin: str):
        return https_request(
            running.host,
            running.ports["vehicle"],
            "GET",
            f"/api/v1/tls/vehicles/{vin}/session/",
            config=CATALOGUE[1],
            credentials=credentials,
            server_hostname="localhost",
        )

    assert get(VIN_A).status == 200
    forbidden = get(VIN_B)
    assert forbidden.status == 403
    assert forbidden.json()["error"]["code"] == "permission_denied"


def test_every_vehicle_handshake_reaches_the_session_hook(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    config = next(c for c in CATALOGUE if c.id == 4)
    before = len(running.handshakes)
    with open_connection(
        running.host,
        running.ports["vehicle"],
        config=config,
        credentials=fleet.credentials[(VIN_A, "ml-dsa-65")],
        server_hostname="localhost",
    ) as conn:
        conn.sendall(b"GET /api/v1/tls/whoami/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        conn.recv()
    recorded = running.handshakes[before:]
    assert [(h["vin"], h["group"], h["signature_algorithm"]) for h in recorded] == [
        (VIN_A, "MLKEM768", "mldsa65")
    ]


def test_vehicle_handshake_records_the_configuration_on_the_vehicle(fleet: FleetMaterial) -> None:
    import time

    from pqc.server import recording_sessions, stop_in_thread
    from pqc.tests.conftest import MOSQUITTO, start_listeners
    from vehicles.identity import record_tls_session_from_listener
    from vehicles.models import Vehicle

    Vehicle.objects.create(vin=VIN_A, model_name="Aurora", model_year=2026)
    server = start_listeners(
        fleet, hook=recording_sessions(record_tls_session_from_listener), mqtt_upstream=MOSQUITTO
    )
    try:
        config = next(c for c in CATALOGUE if c.group == "SecP384r1MLKEM1024")
        with open_connection(
            server.host,
            server.ports["mqtt"],
            config=config,
            credentials=fleet.credentials[(VIN_A, config.signature)],
            server_hostname="localhost",
        ):
            pass
        # The write happens on a worker thread; poll (bounded) rather than sleep blindly.
        deadline = time.monotonic() + 10
        vehicle = Vehicle.objects.get(vin=VIN_A)
        while not vehicle.tls_seen_at and time.monotonic() < deadline:
            time.sleep(0.05)
            vehicle.refresh_from_db()
    finally:
        stop_in_thread(server.listeners)
    assert (vehicle.tls_group, vehicle.tls_signature_algorithm, vehicle.tls_version) == (
        "SecP384r1MLKEM1024",
        "mldsa87",
        "TLSv1.3",
    )


def test_listener_answers_close_notify_and_then_closes_the_connection(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    from OpenSSL import SSL

    config = next(c for c in CATALOGUE if c.id == 1)
    conn = open_connection(running.host, running.ports["vehicle"], config=config,
                           credentials=fleet.credentials[(VIN_A, config.signature)],
                           server_hostname="localhost")  # fmt: skip
    try:
        conn.tls.shutdown()
        conn._flush()
        conn.sock.settimeout(5)
        for _ in range(10):  # session tickets come first, then the close_notify
            try:
                conn.tls.recv(1)
            except SSL.WantReadError:
                assert conn._fill(), "the server closed without a close_notify"
            except SSL.ZeroReturnError:
                break
        assert conn.tls.get_shutdown() & SSL.RECEIVED_SHUTDOWN
        assert conn.sock.recv(1) == b""  # and then the TCP connection ends
    finally:
        conn.sock.close()


def test_one_connection_serves_consecutive_requests_in_order(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    from pqc.client import _read_response

    config = next(c for c in CATALOGUE if c.id == 4)
    request = b"GET /api/v1/tls/whoami/ HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with open_connection(running.host, running.ports["vehicle"], config=config,
                         credentials=fleet.credentials[(VIN_A, config.signature)],
                         server_hostname="localhost") as conn:  # fmt: skip
        bodies = []
        for _ in range(3):
            conn.sendall(request)
            response = _read_response(conn)
            assert response.status == 200
            bodies.append(response.json())

    assert [(b["vin"], b["group"]) for b in bodies] == [(VIN_A, "MLKEM768")] * 3


@pytest.mark.parametrize("listener", ["vehicle", "mqtt"])
def test_revoked_certificate_cannot_resume_an_earlier_session(
    running: RunningListeners, fleet: FleetMaterial, listener: str
) -> None:
    import socket

    from OpenSSL import SSL

    from pqc.client import PqcTlsConnection
    from pqc.tls import build_client_context

    credentials = fleet.issue(VIN_A, name=f"resume-{listener}")
    ctx = build_client_context(config=CATALOGUE[1], cert_path=credentials.cert,
                               key_path=credentials.key, ca_path=credentials.ca)  # fmt: skip

    def connect(session: SSL.Session | None = None) -> PqcTlsConnection:
        sock = socket.create_connection((running.host, running.ports[listener]), timeout=10)
        conn = PqcTlsConnection(sock, ctx, "localhost")
        if session is not None:
            conn.tls.set_session(session)
        conn.handshake()
        return conn

    first = connect()
    received = first.bytes_received
    while first.bytes_received == received:  # the session tickets follow the handshake
        assert first._fill()
        with pytest.raises(SSL.WantReadError):
            first.tls.recv(1)
    session = first.tls.get_session()
    first.close()
    fleet.pki.revoke(fleet.serial_of(credentials))

    with pytest.raises(TlsRefused, match="certificate revoked"):
        conn = connect(session)
        try:
            # TLS 1.3 clients learn of the refusal on their first read.
            conn.sendall(b"GET /api/v1/tls/whoami/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            conn.recv()
        finally:
            conn.sock.close()
