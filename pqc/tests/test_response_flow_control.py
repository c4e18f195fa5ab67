"""A vehicle that stops reading holds the response back: the server buffers a bounded amount.

The application below counts what it has handed to ASGI `send`; a stalled client must stop
that count well short of the body, and the whole body must still arrive intact afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pqc.catalogue import load_catalogue
from pqc.client import PqcTlsConnection, open_connection
from pqc.tests.conftest import VIN_A, FleetMaterial

pytestmark = pytest.mark.slow

MIB = 1 << 20
MESSAGE = 64 * 1024  # what Django's ASGI handler sends per body message
BODY = 128 * MIB
# What the server may hold for one connection beyond the kernel's socket buffers.
ALLOWED_BUFFERING = 16 * MIB
CLIENT_RCVBUF = 256 * 1024

_BASE = random.Random(20261126).randbytes(MESSAGE)


def _message(index: int) -> bytes:
    return index.to_bytes(8, "big") + _BASE[8:]


def _expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for index in range(size // MESSAGE):
        digest.update(_message(index))
    return digest.hexdigest()


class CountingStream:
    """An ASGI app streaming BODY bytes in 64 KiB messages, counting what it has produced."""

    def __init__(self) -> None:
        self.produced = 0
        self.finished = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.produced = 0
        self.finished.clear()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/octet-stream"),
                        (b"content-length", str(BODY).encode()),
                    ],
                }
            )
            for index in range(BODY // MESSAGE):
                body = _message(index)
                self.produced += len(body)
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            self.finished.set()


@pytest.fixture
def streaming(fleet: FleetMaterial) -> Iterator[tuple[CountingStream, int]]:
    from pqc.server import listeners_from_settings, start_in_thread, stop_in_thread

    app = CountingStream()
    listeners = listeners_from_settings(
        application=app,
        pki=fleet.pki,
        host="127.0.0.1",
        vehicle_port=0,
        console_port=0,
        with_mqtt=False,
        on_vehicle_handshake=None,
    )
    ports = start_in_thread(listeners)
    # Daphne cancels an app whose client left after this many seconds; the flow control must
    # release a stalled response on its own, so that backstop is moved out of the way.
    listeners.asgi.application_close_timeout = 3600
    yield app, ports["vehicle"]
    stop_in_thread(listeners)


def _connect(fleet: FleetMaterial, port: int) -> PqcTlsConnection:
    config = next(c for c in load_catalogue() if c.id == 1)
    conn = open_connection(
        "127.0.0.1",
        port,
        config=config,
        credentials=fleet.credentials[(VIN_A, "ecdsa-p256")],
        server_hostname="localhost",
    )
    # A fixed receive buffer: the kernel's autotuning would otherwise decide how much of the
    # body sits in this socket while the client is not reading.
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    conn.sendall(b"GET /package HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    return conn


def _settled_production(app: CountingStream) -> int:
    """What the app has produced once the count stops moving (or the whole body is out)."""
    last, steady = -1, 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and app.produced < BODY and steady < 20:
        time.sleep(0.05)
        steady = steady + 1 if app.produced == last else 0
        last = app.produced
    return app.produced


def _kernel_send_buffer_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * MIB


def _read_response(conn: PqcTlsConnection) -> tuple[bytes, int, str]:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv()
        assert chunk, "connection closed before the response head"
        head += chunk
    head, body = head.split(b"\r\n\r\n", 1)
    digest = hashlib.sha256(body)
    got = len(body)
    while chunk := conn.recv(MIB):
        digest.update(chunk)
        got += len(chunk)
    return head, got, digest.hexdigest()


def test_stalled_vehicle_holds_the_response_back_then_receives_it_whole(
    fleet: FleetMaterial, streaming: tuple[CountingStream, int]
) -> None:
    app, port = streaming
    with _connect(fleet, port) as conn:
        produced = _settled_production(app)
        in_kernel = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        in_kernel += _kernel_send_buffer_max()

        assert produced < BODY
        assert produced <= ALLOWED_BUFFERING + in_kernel

        head, got, sha256 = _read_response(conn)

    assert head.startswith(b"HTTP/1.1 200")
    assert got == BODY
    assert sha256 == _expected_sha256(BODY)
    assert app.produced == BODY


def test_vehicle_that_hangs_up_while_stalled_releases_the_response(
    fleet: FleetMaterial, streaming: tuple[CountingStream, int]
) -> None:
    app, port = streaming
    conn = _connect(fleet, port)
    produced = _settled_production(app)
    assert produced < BODY
    assert not app.finished.is_set()

    conn.sock.close()

    # Daphne drops what the app sends after the hang-up; the app must not wait forever.
    assert app.finished.wait(timeout=30)


def test_vehicle_that_stalls_past_the_timeout_is_cut_off(
    fleet: FleetMaterial, streaming: tuple[CountingStream, int], settings
) -> None:
    settings.OTA_RESPONSE_STALL_TIMEOUT_SECONDS = 1.0
    app, port = streaming
    with _connect(fleet, port) as conn:
        # Reading nothing, the client is disconnected and the application released (what it
        # sends after the cut is dropped, so it then runs to its end at once).
        assert app.finished.wait(timeout=30)
        conn.sock.settimeout(30)
        received = 0
        with contextlib.suppress(OSError):
            while chunk := conn.recv(MIB):
                received += len(chunk)
        assert received < BODY
