from __future__ import annotations

import contextlib
import json as jsonlib
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from OpenSSL import SSL

from pqc.catalogue import PqcConfiguration
from pqc.tls import TlsSessionInfo, build_client_context, expect_hostname, session_info

_CHUNK = 65536


class TlsRefused(ConnectionError):
    """The server refused the handshake or closed the connection with an alert."""


@dataclass(frozen=True)
class ClientCredentials:
    """PEM files a vehicle holds: its certificate chain, its key and the fleet CA bundle."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    passphrase: bytes | None = None

    @classmethod
    def from_dir(
        cls, directory: Path | str, *, passphrase: bytes | None = None
    ) -> ClientCredentials:
        """Load the files `pqc_pki issue-vehicle --out DIR` writes."""
        base = Path(directory)
        return cls(
            ca=base / "ca-bundle.pem",
            cert=base / "vehicle.crt",
            key=base / "vehicle.key",
            passphrase=passphrase,
        )


class PqcTlsConnection:
    """A blocking PQC-TLS client connection that counts the bytes it puts on the wire.

    OpenSSL runs over memory BIOs so every TLS byte passes through Python, which is what
    makes the per-handshake byte counts of the benchmark exact.
    """

    def __init__(self, sock: socket.socket, ctx: SSL.Context, server_hostname: str) -> None:
        self.sock = sock
        self.tls = SSL.Connection(ctx, None)
        self.tls.set_connect_state()
        expect_hostname(self.tls, server_hostname)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.handshake_seconds = 0.0
        self.info: TlsSessionInfo | None = None

    def _flush(self) -> None:
        while True:
            try:
                out = self.tls.bio_read(_CHUNK)
            except SSL.WantReadError:
                return
            self.sock.sendall(out)
            self.bytes_sent += len(out)

    def _fill(self) -> bool:
        data = self.sock.recv(_CHUNK)
        if not data:
            self.tls.bio_shutdown()
            return False
        self.bytes_received += len(data)
        self.tls.bio_write(data)
        return True

    def handshake(self) -> TlsSessionInfo:
        start = time.perf_counter()
        try:
            while True:
                try:
                    self.tls.do_handshake()
                    break
                except SSL.WantReadError:
                    self._flush()
                    if not self._fill():
                        raise TlsRefused("server closed the connection during the handshake")
            self._flush()
        except SSL.Error as exc:
            self._flush_quietly()
            raise TlsRefused(f"handshake refused: {exc}") from None
        except OSError as exc:
            raise TlsRefused(f"handshake failed: {exc}") from None
        self.handshake_seconds = time.perf_counter() - start
        self.info = session_info(self.tls, server_side=False)
        return self.info

    def _flush_quietly(self) -> None:
        with contextlib.suppress(OSError):
            self._flush()

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                sent = self.tls.send(view[:16384])
                view = view[sent:]
                self._flush()
        except SSL.Error as exc:
            raise TlsRefused(f"send refused: {exc}") from None

    def recv(self, size: int = _CHUNK) -> bytes:
        """Up to `size` plaintext bytes; b"" at a clean close. Alerts raise TlsRefused."""
        while True:
            try:
                return self.tls.recv(size)
            except SSL.WantReadError:
                self._flush()
                try:
                    if not self._fill():
                        return b""
                except (ConnectionResetError, BrokenPipeError):
                    return b""
            except SSL.ZeroReturnError:
                return b""
            except SSL.SysCallError:
                return b""
            except SSL.Error as exc:
                raise TlsRefused(f"connection refused by peer: {exc}") from None

    def recv_ready(self) -> bytes | None:
        """Plaintext already decryptable without reading the socket (None: need more)."""
        try:
            return self.tls.recv(_CHUNK)
        except SSL.WantReadError:
            return None
        except (SSL.ZeroReturnError, SSL.SysCallError):
            return b""
        except SSL.Error as exc:
            raise TlsRefused(f"connection refused by peer: {exc}") from None

    def close(self) -> None:
        try:
            self.tls.shutdown()
            self._flush()
        except (SSL.Error, OSError):
            pass
        self.sock.close()

    def __enter__(self) -> PqcTlsConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_connection(
    host: str,
    port: int,
    *,
    config: PqcConfiguration | None = None,
    groups: list[str] | None = None,
    sigalgs: list[str] | None = None,
    credentials: ClientCredentials | None = None,
    server_hostname: str | None = None,
    verify_server: bool = True,
    timeout: float = 10.0,
) -> PqcTlsConnection:
    """Connect and complete a TLS 1.3 handshake restricted to one configuration."""
    ctx = build_client_context(
        config=config,
        groups=groups,
        sigalgs=sigalgs,
        cert_path=credentials.cert if credentials else None,
        key_path=credentials.key if credentials else None,
        ca_path=credentials.ca if credentials else None,
        passphrase=credentials.passphrase if credentials else None,
        verify_server=verify_server,
    )
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = PqcTlsConnection(sock, ctx, server_hostname or host)
    try:
        conn.handshake()
    except BaseException:
        sock.close()
        raise
    return conn


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    tls: TlsSessionInfo | None = None

    def json(self) -> Any:
        return jsonlib.loads(self.body)


def read_response_head(conn: PqcTlsConnection) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers, and the body bytes already read past the head."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv()
        if not chunk:
            raise TlsRefused("connection closed before an HTTP response")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("iso-8859-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def _read_response(conn: PqcTlsConnection) -> HttpResponse:
    status, headers, rest = read_response_head(conn)
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = conn.recv()
            if not chunk:
                break
            rest += chunk
        body = rest[:length]
    else:
        while chunk := conn.recv():
            rest += chunk
        body = _dechunk(rest) if headers.get("transfer-encoding") == "chunked" else rest
    return HttpResponse(status=status, headers=headers, body=body, tls=conn.info)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


def https_request(
    host: str,
    port: int,
    method: str,
    path: str,
    *,
    json: Any = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    **connect: Any,
) -> HttpResponse:
    """One HTTP/1.1 request over a fresh PQC-TLS connection (`connect` as open_connection)."""
    payload = jsonlib.dumps(json).encode() if json is not None else (body or b"")
    all_headers = {"Host": connect.get("server_hostname") or host, "Connection": "close"}
    if json is not None:
        all_headers["Content-Type"] = "application/json"
    if payload or method.upper() in {"POST", "PUT", "PATCH"}:
        all_headers["Content-Length"] = str(len(payload))
    all_headers.update(headers or {})
    request = f"{method.upper()} {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in all_headers.items()
    )
    with open_connection(host, port, **connect) as conn:
        conn.sendall(request.encode("iso-8859-1") + b"\r\n" + payload)
        return _read_response(conn)


@dataclass
class MqttTlsTunnel:
    """A loopback plaintext port that carries each accepted connection over PQC-TLS.

    paho-mqtt only speaks the stdlib `ssl` module, whose OpenSSL has no ML-KEM; a client
    connects to `127.0.0.1:tunnel.port` in plain MQTT and the tunnel does the PQC-TLS.
    """

    host: str
    port_remote: int
    connect: dict[str, Any] = field(default_factory=dict)
    listen_host: str = "127.0.0.1"
    port: int = 0
    errors: list[str] = field(default_factory=list)
    # What each of the tunnel's handshakes negotiated, in connection order.
    sessions: list[TlsSessionInfo] = field(default_factory=list)
    _listener: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> MqttTlsTunnel:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((self.listen_host, 0))
        listener.listen(8)
        listener.settimeout(0.2)
        self._listener = listener
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="mqtt-tls-tunnel", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> MqttTlsTunnel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                plain, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._pump, args=(plain,), daemon=True).start()

    def _pump(self, plain: socket.socket) -> None:
        try:
            tls = open_connection(self.host, self.port_remote, **self.connect)
        except (TlsRefused, OSError) as exc:
            self.errors.append(str(exc))
            plain.close()
            return
        if tls.info is not None:
            self.sessions.append(tls.info)
        try:
            _pump_until_closed(plain, tls, self._stop)
        except (TlsRefused, OSError) as exc:
            self.errors.append(str(exc))
        finally:
            plain.close()
            tls.close()


def _pump_until_closed(plain: socket.socket, tls: PqcTlsConnection, stop: threading.Event) -> None:
    plain.setblocking(True)
    tls.sock.settimeout(None)
    while not stop.is_set():
        readable, _, _ = select.select([plain, tls.sock], [], [], 0.2)
        if plain in readable:
            data = plain.recv(_CHUNK)
            if not data:
                return
            tls.sendall(data)
        if tls.sock in readable:
            # Read the socket once and decrypt what it completes; a lone session ticket
            # yields no plaintext and must not block the other direction.
            if not tls._fill():
                return
            while (more := tls.recv_ready()) is not None:
                if not more:
                    return
                plain.sendall(more)
            tls._flush()
