"""PQC-TLS for thousands of connections on one asyncio event loop.

The stdlib `ssl` module has no ML-KEM, so OpenSSL runs through pyOpenSSL over memory BIOs:
asyncio moves the TCP bytes, `SSL.Connection.bio_write`/`bio_read` feed and drain OpenSSL.
One client context per PQC configuration serves every vehicle of that configuration; each
connection sets its own vehicle's certificate and key, so 10,000 vehicles do not hold 10,000
contexts (each with its own copy of the CA bundle).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from OpenSSL import SSL, crypto

from pqc.catalogue import PqcConfiguration
from pqc.tls import TlsSessionInfo, build_client_context, expect_hostname, session_info

_CHUNK = 65536


class TlsClosed(ConnectionError):
    """The peer closed the connection, refused the handshake or sent an alert."""


@dataclass
class VehicleIdentity:
    """A vehicle's certificate and key, parsed once and used for every connection."""

    vin: str
    cert: crypto.X509
    key: crypto.PKey

    @classmethod
    def load(cls, vin: str, directory: Path) -> VehicleIdentity:
        # pyOpenSSL cannot convert cryptography's ML-DSA keys, so OpenSSL parses the PEM itself.
        return cls(
            vin=vin,
            cert=crypto.load_certificate(
                crypto.FILETYPE_PEM, (directory / "vehicle.crt").read_bytes()
            ),
            key=crypto.load_privatekey(
                crypto.FILETYPE_PEM, (directory / "vehicle.key").read_bytes()
            ),
        )


@dataclass
class HandshakeCounts:
    """What the fleet's handshakes negotiated, counted; and how many failed."""

    negotiated: Counter = field(default_factory=Counter)
    failed: int = 0
    total_seconds: float = 0.0

    def add(self, info: TlsSessionInfo, seconds: float) -> None:
        self.negotiated[(info.group, info.peer_key_type, info.own_key_type)] += 1
        self.total_seconds += seconds

    @property
    def completed(self) -> int:
        return sum(self.negotiated.values())

    def as_dict(self) -> dict:
        return {
            "completed": self.completed,
            "failed": self.failed,
            "mean_ms": round(1000 * self.total_seconds / max(self.completed, 1), 2),
            "by_group": [
                {"group": group, "server_key": server, "client_key": client, "count": count}
                for (group, server, client), count in sorted(self.negotiated.items())
            ],
        }


class ClientContexts:
    """One pyOpenSSL client context per PQC configuration, shared by the whole fleet."""

    def __init__(self, ca_bundle: Path) -> None:
        self.ca_bundle = ca_bundle
        self._contexts: dict[int, SSL.Context] = {}

    def for_config(self, config: PqcConfiguration) -> SSL.Context:
        if config.id not in self._contexts:
            self._contexts[config.id] = build_client_context(config=config, ca_path=self.ca_bundle)
        return self._contexts[config.id]


class TlsStream:
    """A PQC-TLS client connection over an asyncio stream pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tls: SSL.Connection,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.tls = tls
        self.info: TlsSessionInfo | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        context: SSL.Context,
        identity: VehicleIdentity,
        server_hostname: str,
        counts: HandshakeCounts,
        timeout: float = 30.0,
    ) -> TlsStream:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=_CHUNK * 2), timeout
            )
        except (OSError, TimeoutError) as exc:
            counts.failed += 1
            raise TlsClosed(f"connect to {host}:{port}: {exc}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = SSL.Connection(context, None)
        tls.set_connect_state()
        tls.use_certificate(identity.cert)
        tls.use_privatekey(identity.key)
        expect_hostname(tls, server_hostname)
        stream = cls(reader, writer, tls)
        try:
            await asyncio.wait_for(stream._handshake(), timeout)
        except (TlsClosed, TimeoutError, OSError) as exc:
            counts.failed += 1
            stream.abort()
            raise TlsClosed(f"handshake with {host}:{port}: {exc}") from None
        stream.info = session_info(tls, server_side=False)
        counts.add(stream.info, loop.time() - started)
        return stream

    async def _handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except SSL.WantReadError:
                await self._flush()
                await self._fill()
            except SSL.Error as exc:
                self._flush_nowait()
                raise TlsClosed(f"refused: {exc}") from None
        await self._flush()

    def _flush_nowait(self) -> None:
        while True:
            try:
                out = self.tls.bio_read(_CHUNK)
            except SSL.WantReadError:
                return
            self.writer.write(out)

    async def _flush(self) -> None:
        self._flush_nowait()
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise TlsClosed(str(exc)) from None

    async def _fill(self) -> None:
        data = await self.reader.read(_CHUNK)
        if not data:
            raise TlsClosed("connection closed by the server")
        self.tls.bio_write(data)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                sent = self.tls.send(view[:16384])
                view = view[sent:]
        except SSL.Error as exc:
            raise TlsClosed(f"send refused: {exc}") from None
        await self._flush()

    async def recv(self) -> bytes:
        """Some plaintext; raises TlsClosed at the end of the connection."""
        while True:
            try:
                return self.tls.recv(_CHUNK)
            except SSL.WantReadError:
                await self._flush()
                await self._fill()
            except (SSL.ZeroReturnError, SSL.SysCallError):
                raise TlsClosed("connection closed by the server") from None
            except SSL.Error as exc:
                raise TlsClosed(f"alert from the server: {exc}") from None

    def abort(self) -> None:
        """Drop the TCP connection without a TLS close_notify (a cut, or a dead vehicle)."""
        self.writer.transport.abort()

    async def close(self) -> None:
        try:
            self.tls.shutdown()
            self._flush_nowait()
        except SSL.Error:
            pass
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)
