"""The vehicle's HTTPS client: keep-alive HTTP/1.1 over PQC-TLS with mutual authentication.

Connections come from `pqc.client.open_connection`, restricted to one configuration of the
catalogue; every handshake's negotiated parameters are kept in `sessions` so that a test or
an operator can see what the vehicle actually used. Downloads are resumable Range requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json as jsonlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pqc.catalogue import PqcConfiguration
from pqc.client import (
    ClientCredentials,
    PqcTlsConnection,
    TlsRefused,
    open_connection,
    read_response_head,
)
from pqc.tls import TlsSessionInfo

logger = logging.getLogger("simulator.https")

RANGE_CHUNK = 64 * 1024


class HttpsError(Exception):
    """An HTTP answer the vehicle cannot use; `status` 0 means no answer at all."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.body = body


class ConnectionCut(Exception):
    """The connection dropped in the middle of a response (simulated or real)."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body) if self.body else None


@dataclass
class DownloadStats:
    requests: int = 0
    resumes: int = 0
    bytes: int = 0


@dataclass
class VehicleHttps:
    """One keep-alive PQC-TLS connection to the server's vehicle listener, reopened on demand."""

    host: str
    port: int
    config: PqcConfiguration
    credentials: ClientCredentials
    server_hostname: str = "localhost"
    timeout: float = 30.0
    # A server restarting or without its database (503, or no answer at all) is waited for:
    # at most `retries` more tries, backing off from `backoff` up to `backoff_max` seconds.
    retries: int = 6
    backoff: float = 0.5
    backoff_max: float = 8.0
    retry_after_cap: float = 30.0
    sessions: list[TlsSessionInfo] = field(default_factory=list)
    stats: DownloadStats = field(default_factory=DownloadStats)
    _conn: PqcTlsConnection | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # connection ----------------------------------------------------------------------------

    def _connection(self) -> PqcTlsConnection:
        if self._conn is None:
            self._conn = open_connection(
                self.host,
                self.port,
                config=self.config,
                credentials=self.credentials,
                server_hostname=self.server_hostname,
                timeout=self.timeout,
            )
            assert self._conn.info is not None
            self.sessions.append(self._conn.info)
        return self._conn

    def _drop(self, *, clean: bool = True) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if clean:
            conn.close()
        else:
            # A cut: the TCP connection vanishes without a TLS close_notify.
            with contextlib.suppress(OSError):
                conn.sock.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def serves(self, url: str) -> bool:
        """Whether `url` points at this listener (then its connection is reused)."""
        parts = urlsplit(url)
        return parts.port == self.port and parts.hostname in {self.server_hostname, self.host}

    # requests ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        cut_after: int | None = None,
    ) -> Response:
        """One request on the kept-alive connection (a stale one is replaced once)."""
        body = jsonlib.dumps(json).encode() if json is not None else b""
        head = {"Host": self.server_hostname, "Accept": "application/json"}
        if json is not None:
            head["Content-Type"] = "application/json"
        if body or method in {"POST", "PUT", "PATCH"}:
            head["Content-Length"] = str(len(body))
        head.update(headers or {})
        raw = (
            (
                f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
            ).encode("iso-8859-1")
            + b"\r\n"
            + body
        )
        with self._lock:
            for attempt in (1, 2):
                reused = self._conn is not None
                conn = self._connection()
                try:
                    conn.sendall(raw)
                    return self._read_response(conn, cut_after=cut_after)
                except ConnectionCut:
                    self._drop(clean=False)
                    raise
                except (TlsRefused, OSError) as exc:
                    self._drop(clean=False)
                    # The server may close an idle keep-alive connection at any time.
                    if not reused or attempt == 2:
                        raise HttpsError(0, f"{method} {path}: {exc}") from None
        raise AssertionError("unreachable")

    def _read_response(self, conn: PqcTlsConnection, *, cut_after: int | None) -> Response:
        status, headers, rest = read_response_head(conn)
        if "content-length" in headers:
            body = self._read_exact(conn, rest, int(headers["content-length"]), cut_after)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked(conn, rest, cut_after)
        else:
            while chunk := conn.recv():
                rest += chunk
            body = rest
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self._drop()
        return Response(status=status, headers=headers, body=body)

    @staticmethod
    def _read_exact(conn: PqcTlsConnection, have: bytes, length: int, cut: int | None) -> bytes:
        while len(have) < length:
            if cut is not None and len(have) >= cut:
                raise ConnectionCut(have[:cut])
            chunk = conn.recv()
            if not chunk:
                raise ConnectionCut(have)
            have += chunk
        if cut is not None and cut < length:
            raise ConnectionCut(have[:cut])
        return have[:length]

    @staticmethod
    def _read_chunked(conn: PqcTlsConnection, have: bytes, cut: int | None) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in have:
                chunk = conn.recv()
                if not chunk:
                    raise ConnectionCut(body)
                have += chunk
            size_line, have = have.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(have) < size + 2:
                if cut is not None and len(body) + len(have) >= cut:
                    raise ConnectionCut((body + have)[:cut])
                chunk = conn.recv()
                if not chunk:
                    raise ConnectionCut(body + have[:size])
                have += chunk
            if size == 0:
                return body
            body += have[:size]
            have = have[size + 2 :]
            if cut is not None and len(body) >= cut:
                raise ConnectionCut(body[:cut])

    def send(self, method: str, path: str, *, json: Any = None) -> Response:
        """A request retried, bounded and with backoff, while the server is unavailable."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                response = self.request(method, path, json=json)
            except HttpsError as exc:
                if attempt == self.retries:
                    raise
                logger.warning("%s %s: %s; retrying in %.1f s", method, path, exc, delay)
                wait = delay
            else:
                if response.status != 503 or attempt == self.retries:
                    return response
                retry_after = response.headers.get("retry-after", "")
                wait = (
                    min(float(retry_after), self.retry_after_cap)
                    if retry_after.isdigit()
                    else delay
                )
                logger.warning("%s %s: 503; retrying in %.1f s", method, path, wait)
            time.sleep(wait)
            delay = min(delay * 2, self.backoff_max)
        raise AssertionError("unreachable")

    def call(self, method: str, path: str, *, json: Any = None, ok: tuple[int, ...] = ()) -> Any:
        """A JSON request that must succeed (2xx or one of `ok`); returns the decoded body."""
        response = self.send(method, path, json=json)
        if not (200 <= response.status < 300 or response.status in ok):
            try:
                detail = response.json()
            except ValueError:
                detail = response.body[:200]
            raise HttpsError(response.status, f"{method} {path}: {detail}", detail)
        return response.json()

    # downloads -----------------------------------------------------------------------------

    def download(
        self,
        path: str,
        dest: Path,
        *,
        size: int,
        sha256: str,
        chunk_size: int = RANGE_CHUNK,
        cut_at: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[int], None] = lambda done: None,
    ) -> Path:
        """Fetch `path` into `dest` in Range requests, resuming from a partial `dest.part`.

        `cut_at` drops the connection once, mid-response, when the download passes that byte:
        the next request resumes where the data stopped, with If-Range so a package rebuilt
        meanwhile restarts from zero instead of mixing two files.
        """
        part = dest.with_name(dest.name + ".part")
        etag_file = dest.with_name(dest.name + ".etag")
        if dest.exists() and _sha256_of(dest) == sha256:
            return dest
        offset = part.stat().st_size if part.exists() else 0
        etag = etag_file.read_text() if etag_file.exists() and offset else ""
        if offset:
            self.stats.resumes += 1
        while offset < size:
            if should_stop():
                raise InterruptedError("download stopped")
            end = min(offset + chunk_size, size) - 1
            headers = {"Range": f"bytes={offset}-{end}"}
            if etag:
                headers["If-Range"] = etag
            cut = None
            if cut_at is not None and offset <= cut_at <= end:
                cut, cut_at = cut_at - offset, None
            self.stats.requests += 1
            try:
                response = self.request("GET", path, headers=headers, cut_after=cut)
            except ConnectionCut as exc:
                received = exc.args[0] if exc.args else b""
                with part.open("ab") as fh:
                    fh.write(received)
                offset += len(received)
                self.stats.bytes += len(received)
                self.stats.resumes += 1
                logger.info("download of %s cut at byte %d; resuming", path, offset)
                continue
            if response.status == 206:
                start = int(response.headers["content-range"].split()[1].split("-")[0])
                if start != offset:
                    raise HttpsError(206, f"asked for byte {offset}, got {start}")
                with part.open("ab") as fh:
                    fh.write(response.body)
            elif response.status == 200:
                # The server ignored the range (the file changed under If-Range): start over.
                part.write_bytes(response.body)
                offset = 0
            else:
                raise HttpsError(response.status, f"GET {path}: {response.body[:200]!r}")
            etag = response.headers.get("etag", etag)
            etag_file.write_text(etag)
            offset = part.stat().st_size
            self.stats.bytes += len(response.body)
            on_progress(offset)
        if offset != size or _sha256_of(part) != sha256:
            part.unlink(missing_ok=True)
            raise HttpsError(0, f"{path}: downloaded bytes do not hash to the plan's sha256")
        part.replace(dest)
        etag_file.unlink(missing_ok=True)
        return dest


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def possession_proof(path: Path, nonce: str) -> str:
    """HMAC-SHA256 of a downloaded package keyed by the attempt's nonce: proves the vehicle holds
    the whole file even where the server lost its record of serving it."""
    digest = hmac.new(bytes.fromhex(nonce), digestmod=hashlib.sha256)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def possession_proof_of_bytes(data: bytes, nonce: str) -> str:
    """`possession_proof` of a package held in memory."""
    return hmac.new(bytes.fromhex(nonce), data, hashlib.sha256).hexdigest()
