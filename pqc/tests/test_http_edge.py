"""Hostile HTTP over real PQC-TLS connections to the vehicle and console listeners."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest

from pqc.catalogue import load_catalogue
from pqc.client import (
    ClientCredentials,
    PqcTlsConnection,
    _read_response,
    https_request,
    open_connection,
)
from pqc.http_edge import EdgeLimits
from pqc.tests.conftest import MOSQUITTO, VIN_A, FleetMaterial, RunningListeners, start_listeners
from pqc.tls import build_client_context

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CONFIG = load_catalogue()[1]
HEAD_TIMEOUT = 2.0
IDLE_TIMEOUT = 2.0
HUGE = 64 * 1024**3


@pytest.fixture(scope="module")
def edge(fleet: FleetMaterial) -> Iterator[RunningListeners]:
    """Listeners with short timeouts and small connection bounds."""
    from pqc.server import stop_in_thread

    limits = EdgeLimits(
        head_timeout=HEAD_TIMEOUT,
        idle_timeout=IDLE_TIMEOUT,
        max_headers=50,
        max_head_bytes=8 * 1024,
        max_connections=6,
        max_connections_per_ip=3,
    )
    server = start_listeners(fleet, hook=None, mqtt_upstream=MOSQUITTO, limits=limits)
    yield server
    stop_in_thread(server.listeners)


def _credentials(fleet: FleetMaterial, listener: str) -> ClientCredentials:
    if listener == "vehicle":
        return fleet.credentials[(VIN_A, "ecdsa-p256")]
    return ClientCredentials(ca=fleet.pki.ca_bundle_path)


def _connect(server: RunningListeners, fleet: FleetMaterial, listener: str) -> PqcTlsConnection:
    return open_connection(server.host, server.ports[listener], config=CONFIG,
                           credentials=_credentials(fleet, listener),
                           server_hostname="localhost")  # fmt: skip


def _get(server: RunningListeners, fleet: FleetMaterial, listener: str, path: str, **kw):
    return https_request(server.host, server.ports[listener], kw.pop("method", "GET"), path,
                         config=CONFIG, credentials=_credentials(fleet, listener),
                         server_hostname="localhost", **kw)  # fmt: skip


def _spool_files() -> dict[int, int]:
    """Temporary files this process holds open (Twisted spools bodies there), by size."""
    spool_dir = os.path.realpath(tempfile.gettempdir())
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(spool_dir):
                found[int(fd)] = os.fstat(int(fd)).st_size
        except OSError:
            continue
    return found


def _wait_closed(conn: PqcTlsConnection, bound: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (bounded)."""
    start = time.monotonic()
    conn.sock.settimeout(bound)
    received = b""
    while time.monotonic() - start < bound:
        try:
            chunk = conn.recv()
        except (TimeoutError, OSError):
            break
        if not chunk:
            return received, time.monotonic() - start
        received += chunk
    raise AssertionError(f"still open after {bound} s; got {received[:200]!r}")


@pytest.mark.parametrize(
    ("listener", "path"), [("vehicle", "/api/v1/ota/status"), ("console", "/healthz")]
)
def test_declared_64_gib_body_is_refused_before_it_is_read(
    edge: RunningListeners, fleet: FleetMaterial, listener: str, path: str
) -> None:
    before = _spool_files()
    with _connect(edge, fleet, listener) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {HUGE}\r\n\r\n".encode()
            + b"x" * 4096
        )
        response = _read_response(conn)
        spooled = {fd: size for fd, size in _spool_files().items() if fd not in before}

    assert response.status == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    setting = "OTA_MAX_BODY_BYTES" if listener == "vehicle" else "OTA_ANONYMOUS_MAX_BODY_BYTES"
    assert setting in error["message"]
    assert response.headers["connection"] == "close"
    assert spooled == {}


def test_a_client_that_keeps_sending_a_refused_body_is_cut_off(
    edge: RunningListeners, fleet: FleetMaterial
) -> None:
    before = _spool_files()
    conn = _connect(edge, fleet, "console")
    conn.sendall(f"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {HUGE}\r\n\r\n".encode())
    sent = 0
    chunk = b"x" * 65536
    deadline = time.monotonic() + 15
    conn.sock.settimeout(5)
    try:
        while sent < 256 * 1024**2 and time.monotonic() < deadline:
            conn.sendall(chunk)
            sent += len(chunk)
    except (OSError, ConnectionError):
        pass
    finally:
        conn.sock.close()
    # What the kernel buffers on both sides, not the 64 GiB the client declared.
    assert sent < 32 * 1024**2
    assert {fd for fd in _spool_files() if fd not in before} == set()


def test_chunked_body_is_cut_at_the_anonymous_limit(
    edge: RunningListeners, fleet: FleetMaterial, settings
) -> None:
    settings.OTA_ANONYMOUS_MAX_BODY_BYTES = 64 * 1024
    with _connect(edge, fleet, "console") as conn:
        conn.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(10):  # 80 KiB, never the terminating chunk
            conn.sendall(b"2000\r\n" + b"y" * 0x2000 + b"\r\n")
        response = _read_response(conn)
    assert response.status == 413
    assert "65536" in response.json()["error"]["message"]


def test_bodies_within_the_limit_still_reach_the_application(
    edge: RunningListeners, fleet: FleetMaterial
) -> None:
    response = _get(edge, fleet, "vehicle", "/api/v1/ota/status", method="POST", json={"x": 1})
    assert response.status in {400, 404}  # the application answered: the edge let it through
    assert "request_too_large" not in response.body.decode()


def test_a_credentialed_upload_may_exceed_the_anonymous_limit(
    edge: RunningListeners, fleet: FleetMaterial, settings
) -> None:
    settings.OTA_ANONYMOUS_MAX_BODY_BYTES = 1024
    body = (
        b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n' + b"z" * 4096 + b"\r\n--b--\r\n"
    )
    common = {"method": "POST", "body": body,
              "headers": {"Content-Type": "multipart/form-data; boundary=b"}}  # fmt: skip
    anonymous = _get(edge, fleet, "console", "/api/v1/firmware/upload", **common)
    common["headers"]["Authorization"] = "Token not-a-valid-token"
    claimed = _get(edge, fleet, "console", "/api/v1/firmware/upload", **common)
    assert anonymous.status == 413
    # Past the edge; the application then refuses the token.
    assert claimed.status in {401, 403}


@pytest.mark.parametrize("listener", ["vehicle", "console"])
def test_slowloris_is_cut_within_the_head_timeout(
    edge: RunningListeners, fleet: FleetMaterial, listener: str
) -> None:
    conn = _connect(edge, fleet, listener)
    start = time.monotonic()
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
    closed_at = None
    try:
        for index in range(20):  # a header line every 0.3 s: each resets an idle timer
            time.sleep(0.3)
            conn.sendall(f"X-Slow-{index}: 1\r\n".encode())
    except (OSError, ConnectionError):
        closed_at = time.monotonic() - start
    received, _ = _wait_closed(conn, 5) if closed_at is None else (b"", 0)
    elapsed = time.monotonic() - start
    conn.sock.close()
    assert elapsed < HEAD_TIMEOUT + 2.5
    if received:
        assert received.startswith(b"HTTP/1.1 408")


def test_a_connection_that_never_handshakes_is_dropped(edge: RunningListeners) -> None:
    sock = socket.create_connection((edge.host, edge.ports["console"]), timeout=10)
    start = time.monotonic()
    try:
        data = sock.recv(1024)
    except ConnectionResetError:
        data = b""
    elapsed = time.monotonic() - start
    sock.close()
    assert data == b""
    assert HEAD_TIMEOUT - 0.5 < elapsed < HEAD_TIMEOUT + 2


def test_an_idle_kept_alive_connection_is_closed(
    edge: RunningListeners, fleet: FleetMaterial
) -> None:
    with _connect(edge, fleet, "console") as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert _read_response_keepalive(conn) == 200
        _, closed_after = _wait_closed(conn, IDLE_TIMEOUT + 5)
    assert closed_after < IDLE_TIMEOUT + 3


def _read_response_keepalive(conn: PqcTlsConnection) -> int:
    from pqc.client import read_response_head

    status, headers, rest = read_response_head(conn)
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += conn.recv()
    return status


def test_too_many_headers_get_a_json_400(edge: RunningListeners, fleet: FleetMaterial) -> None:
    headers = {f"X-H{i}": "1" for i in range(60)}
    response = _get(edge, fleet, "console", "/healthz", headers=headers)
    assert response.status == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_an_oversized_header_line_gets_a_json_431(
    edge: RunningListeners, fleet: FleetMaterial
) -> None:
    response = _get(edge, fleet, "console", "/healthz", headers={"X-Big": "a" * 10_000})
    assert response.status == 431
    assert response.json()["error"]["code"] == "header_too_large"


def _tcp_from(server: RunningListeners, listener: str, source: str) -> socket.socket:
    return socket.create_connection((server.host, server.ports[listener]), timeout=5,
                                    source_address=(source, 0))  # fmt: skip


def _refused(sock: socket.socket) -> bool:
    """Closed by the server without a byte (the TLS layer never started)."""
    sock.settimeout(1.0)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _handshakes_from(server: RunningListeners, fleet: FleetMaterial, source: str) -> bool:
    credentials = _credentials(fleet, "vehicle")
    ctx = build_client_context(config=CONFIG, cert_path=credentials.cert,
                               key_path=credentials.key, ca_path=credentials.ca)  # fmt: skip
    conn = PqcTlsConnection(_tcp_from(server, "vehicle", source), ctx, "localhost")
    try:
        conn.handshake()
        return True
    except ConnectionError:
        return False
    finally:
        conn.sock.close()


def test_connections_are_bounded_per_address_and_in_total(
    edge: RunningListeners, fleet: FleetMaterial
) -> None:
    held = [_tcp_from(edge, "vehicle", "127.0.0.3") for _ in range(3)]
    try:
        extra = _tcp_from(edge, "vehicle", "127.0.0.3")
        assert _refused(extra)
        extra.close()
        assert not any(_refused(sock) for sock in held[:1])
        # Another address still gets in, up to the listener's total of six.
        assert _handshakes_from(edge, fleet, "127.0.0.4")
        held += [_tcp_from(edge, "vehicle", "127.0.0.5") for _ in range(3)]
        over_total = _tcp_from(edge, "vehicle", "127.0.0.6")
        assert _refused(over_total)
        over_total.close()
        factory = edge.listeners.factories["vehicle"]
        assert factory.counters.refused_connections >= 2
    finally:
        for sock in held:
            sock.close()
    # Closed connections no longer count.
    deadline = time.monotonic() + 5
    while edge.listeners.factories["vehicle"].protocols and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _handshakes_from(edge, fleet, "127.0.0.3")


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/login/", "/accounts/login/", "/", "/campaigns/", "/api/docs/",
             "/static/admin/css/base.css"],
)  # fmt: skip
def test_vehicle_listener_serves_no_console_routes(
    edge: RunningListeners, fleet: FleetMaterial, path: str
) -> None:
    response = _get(edge, fleet, "vehicle", path)
    assert response.status == 404


@pytest.mark.parametrize("path", ["/api/v1/campaigns", "/api/v1/audit-events/export",
                                  "/api/v1/firmware/upload", "/api/v1/nothing"])  # fmt: skip
def test_vehicle_listener_answers_operator_api_paths_with_a_json_404(
    edge: RunningListeners, fleet: FleetMaterial, path: str
) -> None:
    response = _get(edge, fleet, "vehicle", path)
    assert response.status == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/api/v1/tls/whoami/", "/api/v1/ota/check",
                                  "/api/v1/ota/package/1", "/api/v1/nothing"])  # fmt: skip
def test_console_answers_vehicle_only_api_paths_with_a_json_404(
    edge: RunningListeners, fleet: FleetMaterial, path: str
) -> None:
    response = _get(edge, fleet, "console", path)
    assert response.status == 404
    assert response.json()["error"]["code"] == "not_found"


def test_each_listener_still_serves_its_own_routes(
    edge: RunningListeners, fleet: FleetMaterial
) -> None:
    assert _get(edge, fleet, "vehicle", "/api/v1/tls/whoami/").status == 200
    # Routed on both listeners (this vehicle is not registered, so the view's own 404).
    shared = _get(edge, fleet, "vehicle", "/api/v1/ecus")
    assert shared.status == 200 or shared.json()["error"]["message"] != "no such endpoint"
    assert _get(edge, fleet, "console", "/admin/login/").status == 200
    assert _get(edge, fleet, "console", "/api/docs/").status == 200
    assert _get(edge, fleet, "console", "/static/admin/css/base.css").status == 200
    assert _get(edge, fleet, "console", "/api/v1/ecus").status in {401, 403}


@pytest.mark.parametrize(
    "path",
    [
        "/static/..%2f..%2fsecret_key",
        "/static/..%2f..%2fvar%2fsecret_key",
        "/static/%2e%2e/%2e%2e/otaproject/settings.py",
        "/static/..%5c..%5cotaproject%5csettings.py",
        "/static/admin/..%2f..%2f..%2f..%2fotaproject%2fsettings.py",
        "/static/%2fetc%2fpasswd",
        "/static//etc/passwd",
        "/static/../../../../etc/passwd",
    ],
)
def test_static_paths_cannot_leave_the_static_roots(
    edge: RunningListeners, fleet: FleetMaterial, path: str
) -> None:
    response = _get(edge, fleet, "console", path)
    assert response.status == 404
    assert b"SECRET" not in response.body and b"root:" not in response.body
