from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# daphne.server installs Twisted's asyncio reactor, so it must come before the reactor import
# below (alphabetical order keeps it there).
import daphne.server
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.ws_protocol import WebSocketFactory
from OpenSSL import SSL
from OpenSSL._util import ffi as _ssl_ffi
from OpenSSL._util import lib as _ssl_lib
from twisted.internet import reactor as _reactor
from twisted.internet import tcp
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IPushProducer
from twisted.internet.threads import blockingCallFromThread
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import (
    BufferingTLSTransport,
    TLSMemoryBIOFactory,
    TLSMemoryBIOProtocol,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from core import metrics
from pqc.catalogue import ServerPolicy
from pqc.http_edge import EdgeCounters, EdgeHTTPFactory, EdgeLimits
from pqc.mqtt_front import CertificateBinding, MqttFrontFactory
from pqc.pki import FleetPki
from pqc.revocation import OpenConnections
from pqc.tls import HandshakeRecord, RevocationList, build_server_context, capture_handshake

logger = logging.getLogger(__name__)
reactor: Any = _reactor

VEHICLE = "vehicle"
CONSOLE = "console"
MQTT = "mqtt"

VehicleHandshakeHook = Callable[[HandshakeRecord], None]

# Plaintext handed to OpenSSL per SSL_write: sixteen full TLS records, encrypted in one call,
# read out of the memory BIO in one piece and given to the socket in one send().
TLS_WRITE_BATCH = 256 * 1024
# Ciphertext of one batch: per record a 5-byte header, the inner content type and a 16-byte tag.
_TLS_READ_BATCH = TLS_WRITE_BATCH + (TLS_WRITE_BATCH // 16384 + 1) * 64
# Response body bytes gathered from consecutive ASGI messages into one write.
RESPONSE_WRITE_BYTES = 1024 * 1024
# A client that reads nothing of a response for this long is cut off, so a vehicle that
# vanished mid-download does not hold its connection, file handle and buffers for ever.
RESPONSE_STALL_TIMEOUT_SECONDS = 300.0
# pyOpenSSL turns this mode on for every connection. With a memory BIO (which never blocks)
# it only makes SSL_write return after each 16 KiB record.
_SSL_MODE_ENABLE_PARTIAL_WRITE = 0x00000001


@implementer(IOpenSSLServerConnectionCreator)
class _ConnectionCreator:
    """Hands Twisted a new OpenSSL connection on our context for each accepted socket."""

    def __init__(self, ctx: SSL.Context) -> None:
        self.ctx = ctx

    def serverConnectionForTLS(self, protocol: TLSMemoryBIOProtocol) -> SSL.Connection:  # noqa: N802
        conn = SSL.Connection(self.ctx, None)
        _ssl_lib.SSL_clear_mode(conn._ssl, _SSL_MODE_ENABLE_PARTIAL_WRITE)
        return conn


class _EagerWriteServer(tcp.Server):
    """A TCP connection that skips reactor passes a short TLS connection does not need.

    * Writes: Twisted queues every write for the next reactor pass, which costs a loop
      iteration and two epoll_ctl calls per TLS flight. Like asyncio's own transports, this
      sends at once when nothing is queued; whatever the socket does not take is queued as
      before, so ordering and flow control are unchanged.
    * Close: when the protocol calls loseConnection() while handling a read and nothing is
      left to send (the usual case after the TLS close_notify exchange), the close happens
      as soon as that read returns, through the same path as a peer's FIN, instead of
      waiting for a write-readiness event. The protocol never sees connectionLost() inside
      its own call, as with Twisted's own path.
    """

    # Twisted calls shutdown(2) before close(); its own comment says it is not needed, as the
    # descriptor is close-on-exec and nothing else holds it. One syscall less per connection.
    _shouldShutdown = False
    _in_read = False
    _close_after_read = False

    def _drained(self) -> bool:
        return not self._tempDataBuffer and self.offset == len(self.dataBuffer)

    def write(self, data: bytes) -> None:
        if (
            data
            and type(data) is bytes
            and self.connected
            and not self._writeDisconnected
            and not self.TLS
            and self._drained()
        ):
            try:
                sent = self.socket.send(data)
            except OSError:
                # Would block, or the connection is gone: the queued write path reports
                # a lost connection the usual way.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        super().write(data)

    def loseConnection(self) -> None:
        if (
            self._in_read
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and not self.TLS
            and self._drained()
            # doWrite() would hand control to a paused or pull producer instead of closing.
            and (self.producer is None or (self.streamingProducer and not self.producerPaused))
        ):
            self.stopReading()
            self.disconnecting = True
            self._close_after_read = True
            return
        super().loseConnection()

    def doRead(self) -> Any:
        self._in_read = True
        try:
            why = super().doRead()
        finally:
            self._in_read = False
        if self._close_after_read and why is None and self.connected and not self._aborting:
            self._close_after_read = False
            if self._drained():
                # What doWrite() returns once everything is written after loseConnection().
                return self._postLoseConnection()
            # The protocol queued more after loseConnection(): let doWrite() finish it.
            self.startWriting()
        return why


class _ListeningPort(tcp.Port):
    transport = _EagerWriteServer
    reuse_port = False

    def createInternetSocket(self) -> socket.socket:  # noqa: N802
        sock = super().createInternetSocket()
        if self.reuse_port:
            # Several processes on one host bind the same port; the kernel spreads connections.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return sock


class _ListenerTLSProtocol(BufferingTLSTransport):
    """Twisted's TLS protocol with the per-connection work trimmed for short connections."""

    factory: ListenerFactory
    # What the client certificate says, captured when the handshake finishes (mutual-TLS
    # listeners only); read by the ASGI layer and handed to the handshake hook.
    ota_record: HandshakeRecord | None = None
    # The client address counted against the listener's per-address bound.
    ota_peer_host = ""
    _bios_renewed = False

    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        if self.factory.tcp_nodelay:
            # A TLS flight is written in several small records; Nagle would hold the later
            # ones back until the client acknowledges the first.
            with contextlib.suppress(AttributeError, OSError):
                transport.setTcpNoDelay(True)
        if not self._connectWrapped:
            super().makeConnection(transport)
            return
        # TLSMemoryBIOProtocol.makeConnection copies the transport's interfaces onto this
        # protocol with one directlyProvides() call per interface (nine for TCP), then
        # ProtocolWrapper.makeConnection copies them all again in a single call; the single
        # call alone leaves the protocol in the same state.
        self._tlsConnection = self.factory._creatorCallable(self)
        self._appSendBuffer = []
        ProtocolWrapper.makeConnection(self, transport)
        # Twisted also calls do_handshake() here, which for a server only finds an empty
        # buffer (two WantReadErrors); the first read, with the ClientHello, starts it.

    def _write(self, data: bytes) -> None:
        """Encrypt application bytes in batches of records instead of one record at a time.

        Twisted's version hands OpenSSL one 16 KiB record per call and moves each record to
        the socket on its own (a slice copy, an SSL_write, a BIO read and a send() per record).
        The bytes, their order and the error handling are the same here.
        """
        if self._lostTLSConnection:
            return
        tls = self._tlsConnection
        view = memoryview(data)
        total = len(view)
        offset = 0
        while offset < total:
            try:
                sent = tls.send(view[offset : offset + TLS_WRITE_BATCH])
            except SSL.WantReadError:
                # Not writable yet (handshake in progress): Twisted retries when it can.
                self._bufferedWrite(bytes(view[offset:]))
                break
            except SSL.Error:
                # As Twisted does: fail the TLS connection, reporting the error to the protocol.
                self._tlsShutdownFinished(Failure())
                break
            offset += sent
            self._flushSendBIO()

    def _flushSendBIO(self) -> None:  # noqa: N802
        # Everything OpenSSL has written (Twisted reads at most 32 KiB per call and relies on
        # one call per record).
        tls = self._tlsConnection
        while True:
            try:
                out = tls.bio_read(_TLS_READ_BATCH)
            except SSL.WantReadError:
                return
            self.transport.write(out)
            if len(out) < _TLS_READ_BATCH:
                return

    def _checkHandshakeStatus(self) -> None:  # noqa: N802
        super()._checkHandshakeStatus()
        # Runs before any application bytes of the same read reach the wrapped protocol, so
        # the first HTTP request already sees the identity. Twisted stops calling this once
        # the handshake is done, so each connection is captured once.
        if self._handshakeDone and self.factory.mutual_tls:
            self.factory.handshake_finished(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        super().dataReceived(data)
        if self._handshakeDone and self.factory.renew_bios and not self._bios_renewed:
            self._renew_bios()

    def _renew_bios(self) -> None:
        """Give OpenSSL two new, empty memory BIOs once the handshake is over.

        A memory BIO never shrinks: each would hold the largest flight it carried, the
        handshake's certificates (about 20 KiB with ML-DSA-65) for as long as the connection
        lasts. Only done when both are drained, so no byte is lost or reordered.
        """
        tls = self._tlsConnection
        if self._lostTLSConnection or tls is None or tls._into_ssl is None:
            return
        pending = _ssl_ffi.new("char **")
        if _ssl_lib.BIO_get_mem_data(tls._into_ssl, pending) or _ssl_lib.BIO_get_mem_data(
            tls._from_ssl, pending
        ):
            return  # tried again after the next read
        into, out = _ssl_lib.BIO_new(_ssl_lib.BIO_s_mem()), _ssl_lib.BIO_new(_ssl_lib.BIO_s_mem())
        if into == _ssl_ffi.NULL or out == _ssl_ffi.NULL:
            for bio in (into, out):
                if bio != _ssl_ffi.NULL:
                    _ssl_lib.BIO_free(bio)
            return
        # SSL_set_bio frees the old pair; the connection owns the new one.
        _ssl_lib.SSL_set_bio(tls._ssl, into, out)
        tls._into_ssl, tls._from_ssl = into, out
        self._bios_renewed = True

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        if not self._handshakeDone:
            metrics.TLS_HANDSHAKE_FAILURES.labels(self.factory.listener_name).inc()
        super().connectionLost(reason)


class ListenerFactory(TLSMemoryBIOFactory):
    """TLS wrapper that remembers which listener a connection came in on.

    With `mutual_tls`, every finished handshake is captured as a `HandshakeRecord` on the
    protocol and passed to `on_handshake`. Capturing it here, once, is cheaper than an OpenSSL
    info callback, which OpenSSL enters at every handshake state (about 24 times a connection).
    """

    protocol = _ListenerTLSProtocol

    def __init__(
        self,
        ctx: SSL.Context,
        wrapped: Any,
        *,
        name: str,
        mutual_tls: bool = False,
        on_handshake: VehicleHandshakeHook | None = None,
        open_connections: OpenConnections | None = None,
        limits: EdgeLimits | None = None,
    ) -> None:
        super().__init__(_ConnectionCreator(ctx), False, wrapped)
        self.listener_name = name
        self.mutual_tls = mutual_tls
        self.limits = limits or EdgeLimits()
        self.counters = EdgeCounters()
        self.connections_per_host: dict[str, int] = {}
        # Twisted's HTTPChannel disables Nagle itself when it connects (before the first
        # flight); other wrapped protocols get it from the TLS layer.
        self.tcp_nodelay = not isinstance(wrapped, HTTPFactory)
        # Long-lived connections (the MQTT front) drop their handshake-sized BIO buffers.
        self.renew_bios = False
        self._hook = on_handshake
        self.open_connections = open_connections

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        """A connection over the listener's bounds is closed at once, before any TLS work."""
        host = str(getattr(addr, "host", ""))
        if (
            len(self.protocols) >= self.limits.max_connections
            or self.connections_per_host.get(host, 0) >= self.limits.max_connections_per_ip
        ):
            self.counters.refused_connections += 1
            if self.counters.refused_connections % 1000 == 1:
                logger.warning(
                    "%s listener: connection limit reached (%d total, %d from %s); "
                    "%d connections refused so far",
                    self.listener_name,
                    len(self.protocols),
                    self.connections_per_host.get(host, 0),
                    host,
                    self.counters.refused_connections,
                )
            return None
        protocol = super().buildProtocol(addr)
        protocol.ota_peer_host = host
        return protocol

    def registerProtocol(self, protocol: Any) -> None:  # noqa: N802
        super().registerProtocol(protocol)
        host = protocol.ota_peer_host
        self.connections_per_host[host] = self.connections_per_host.get(host, 0) + 1

    def unregisterProtocol(self, protocol: Any) -> None:  # noqa: N802
        super().unregisterProtocol(protocol)
        host = protocol.ota_peer_host
        remaining = self.connections_per_host.get(host, 0) - 1
        if remaining > 0:
            self.connections_per_host[host] = remaining
        else:
            self.connections_per_host.pop(host, None)

    def handshake_finished(self, protocol: _ListenerTLSProtocol) -> None:
        try:
            record = capture_handshake(protocol._tlsConnection)
        except Exception:  # a bookkeeping failure must not take the reactor down
            logger.exception("TLS handshake bookkeeping failed")
            return
        protocol.ota_record = record
        if record is not None:
            metrics.TLS_HANDSHAKES.labels(
                self.listener_name, record.group, record.server_family
            ).inc()
        if record is not None and self.open_connections is not None:
            self.open_connections.track(protocol, record.peer.get_serial_number())
        if record is None or self._hook is None:
            return
        try:
            self._hook(record)
        except Exception:
            logger.exception("vehicle handshake hook failed")


_HTTP_RESPONSE_MESSAGES = frozenset({"http.response.start", "http.response.body"})


def _unregister_flow(protocol: WebRequest) -> None:
    flow = getattr(protocol, "_ota_flow", None)
    if flow is None:
        return
    protocol._ota_flow = None
    if protocol.producer is flow and protocol.channel is not None:
        protocol.unregisterProducer()
    flow.stopProducing()


def _tls_transport(protocol: Any) -> TLSMemoryBIOProtocol | None:
    """The TLS layer under a daphne HTTP request or WebSocket protocol."""
    channel = getattr(protocol, "channel", None)
    transport = getattr(channel, "transport", None) or getattr(protocol, "transport", None)
    return transport if isinstance(transport, TLSMemoryBIOProtocol) else None


def _stall_timeout() -> float:
    from django.conf import settings

    return float(
        getattr(settings, "OTA_RESPONSE_STALL_TIMEOUT_SECONDS", RESPONSE_STALL_TIMEOUT_SECONDS)
    )


def _abort(protocol: WebRequest) -> None:
    """Drop a connection at once; Daphne then tells the application the client left."""
    channel = getattr(protocol, "channel", None)
    transport = getattr(channel, "transport", None)
    if transport is not None:
        transport.abortConnection()


@implementer(IPushProducer)
class _ResponseFlow:
    """Holds an ASGI response body back while the connection's send buffer is full.

    Daphne writes every `http.response.body` message to the transport as it arrives, so a
    client that stops reading lets the application run ahead and the server buffer the rest
    of the response in memory. Registered as the request's producer, this object hears
    Twisted's flow control (the TCP send buffer above its high-water mark pauses it, a drained
    buffer resumes it) and the ASGI `send` awaits `drained()` after each body message.
    """

    def __init__(self, *, paused: bool) -> None:
        self.paused = paused
        self.stopped = False
        self._waiter: asyncio.Future[None] | None = None
        # Body bytes gathered for one write (see OtaAsgiServer.handle_reply).
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.write_scheduled = False

    def take_pending(self) -> bytes:
        data = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
        self.pending = []
        self.pending_bytes = 0
        return data

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        self._wake()

    def stopProducing(self) -> None:  # noqa: N802
        # The connection is going away; Daphne drops any further message for it.
        self.stopped = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def drained(self) -> None:
        while self.paused and not self.stopped:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class BoundedRequests:
    """ASGI wrapper: at most `limit` HTTP requests run the application at once; the rest wait
    on the event loop, holding no thread.

    Django runs each request's synchronous view in a thread of its own, so a thousand vehicles
    checking at once meant a thousand threads queueing for ten pooled database connections
    and timing out. A request leaves its slot when its response starts (the view is done with
    the database by then: a long download must not hold a slot) or when it ends.
    """

    def __init__(self, application: Any, limit: int) -> None:
        self.application = application
        self.limit = limit
        self.waiting = 0
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.application(scope, receive, send)
            return
        if self._slots is None:  # created on the reactor's event loop, at first use
            self._slots = asyncio.Semaphore(self.limit)
        slots = self._slots
        self.waiting += 1
        try:
            await slots.acquire()
        finally:
            self.waiting -= 1
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        async def send_and_release(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.application(scope, receive, send_and_release)
        finally:
            release()


class OtaAsgiServer(daphne.server.Server):
    """Daphne's HTTP and WebSocket handling behind our PQC-TLS listeners.

    Only this layer writes `scope["ota_tls"]` (the verified vehicle identity) and
    `scope["ota_listener"]`; nothing a client sends can reach those keys.
    """

    def __init__(self, application: Any, *, action_logger: Any = None) -> None:
        super().__init__(
            application, endpoints=["pqc-tls"], signal_handlers=False, action_logger=action_logger
        )

    def prepare(self) -> None:
        """What daphne's run() does before reactor.run(), minus its endpoint parsing."""
        self.connections = {}
        self.http_factory = EdgeHTTPFactory(self)
        self.ws_factory = WebSocketFactory(self, server=self.server_name)
        self.ws_factory.setProtocolOptions(
            autoPingTimeout=self.ping_timeout,
            allowNullOrigin=True,
            openHandshakeTimeout=self.websocket_handshake_timeout,
            maxMessagePayloadSize=self.websocket_max_message_size,
            maxFramePayloadSize=self.websocket_max_frame_size,
        )
        reactor.callLater(1, self.application_checker)
        reactor.callLater(2, self.timeout_checker)
        reactor.addSystemEventTrigger("before", "shutdown", self.kill_all_applications)

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        """Daphne's reply path, plus flow control and coalescing for HTTP response bodies.

        * Flow control (see _ResponseFlow): a body message waits while the connection's send
          buffer is full, so a client that stops reading stops the application too.
        * Coalescing: Django sends a streamed body in 64 KiB messages; each would cost a pass
          through Daphne, Twisted's HTTP layer and TLS. Consecutive messages are gathered up
          to RESPONSE_WRITE_BYTES and written at once; whatever is gathered is written at the
          latest on the next event loop pass, so a slow stream is not delayed.

        Runs on the reactor thread, as do Twisted's pause and resume calls.
        """
        kind = message.get("type")
        if not isinstance(protocol, WebRequest) or kind not in _HTTP_RESPONSE_MESSAGES:
            await super().handle_reply(protocol, message)
            return
        flow = getattr(protocol, "_ota_flow", None)
        if kind == "http.response.start":
            await super().handle_reply(protocol, message)
            if (
                flow is None
                and not protocol.finished
                and protocol.channel is not None
                and protocol.producer is None
            ):
                flow = _ResponseFlow(paused=bool(protocol.channel._waitingForTransport))
                protocol._ota_flow = flow
                protocol.registerProducer(flow, True)
            return
        if flow is None:
            await super().handle_reply(protocol, message)
            return
        body = message.get("body", b"")
        if message.get("more_body", False):
            try:
                await asyncio.wait_for(flow.drained(), timeout=_stall_timeout())
            except TimeoutError:
                logger.warning("client read nothing for %.0f s; closing", _stall_timeout())
                _abort(protocol)
                return
            if body:
                flow.pending.append(body)
                flow.pending_bytes += len(body)
            if flow.pending_bytes >= RESPONSE_WRITE_BYTES:
                self._write_pending(protocol, flow)
            elif flow.pending and not flow.write_scheduled:
                flow.write_scheduled = True
                asyncio.get_running_loop().call_soon(self._write_pending, protocol, flow)
            return
        # The last message: Twisted's Request.finish() expects its producer gone.
        _unregister_flow(protocol)
        if flow.pending:
            flow.pending.append(body)
            message = {**message, "body": flow.take_pending()}
        await super().handle_reply(protocol, message)

    def _write_pending(self, protocol: WebRequest, flow: _ResponseFlow) -> None:
        flow.write_scheduled = False
        if not flow.pending:
            return
        data = flow.take_pending()
        connection = self.connections.get(protocol)
        if connection is None or connection.get("disconnected"):
            return
        protocol.handle_reply({"type": "http.response.body", "body": data, "more_body": True})

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        scope.pop("ota_tls", None)
        transport = _tls_transport(protocol)
        if transport is not None:
            listener = getattr(transport.factory, "listener_name", None)
            scope["ota_listener"] = listener
            record = getattr(transport, "ota_record", None)
            if listener == VEHICLE and record is not None:
                scope["ota_tls"] = dict(record.identity())
        return super().create_application(protocol, scope)


@dataclass
class ListenerSpec:
    """Where one listener binds and what it accepts."""

    port: int
    policy: ServerPolicy
    families: list[str] | None = None


@dataclass
class OtaListeners:
    """The vehicle API, operator console and MQTT TLS front of one process."""

    application: Any
    pki: FleetPki
    host: str
    vehicle: ListenerSpec
    console: ListenerSpec
    mqtt: ListenerSpec | None
    mqtt_upstream: tuple[str, int] | None
    on_vehicle_handshake: VehicleHandshakeHook | None = None
    # The MQTT front's VIN-to-certificate binding check; required when the front listens.
    mqtt_certificate_binding: CertificateBinding | None = None
    action_logger: Any = None
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    # The HTTP listeners this process serves (`runota --role`).
    http_listeners: tuple[str, ...] = (VEHICLE, CONSOLE)
    reuse_port: bool = False
    # HTTP requests running the application at once (see BoundedRequests).
    request_concurrency: int = 8
    ports: dict[str, int] = field(default_factory=dict)
    factories: dict[str, ListenerFactory] = field(default_factory=dict)
    _ports: list[Any] = field(default_factory=list)
    # Open vehicle connections, cut when their certificate is revoked (pqc/revocation.py).
    open_connections: OpenConnections | None = None

    def listen(self) -> dict[str, int]:
        """Bind every listener; call on the reactor thread. Returns the bound ports."""
        if self._serves_mqtt() and self.mqtt_certificate_binding is None:
            raise ValueError("the MQTT front needs mqtt_certificate_binding to check VIN bindings")
        revocation = RevocationList(self.pki)
        self.open_connections = OpenConnections(revocation)
        self.open_connections.start()
        self.asgi = OtaAsgiServer(
            BoundedRequests(self.application, self.request_concurrency),
            action_logger=self.action_logger,
        )
        self.asgi.prepare()
        if VEHICLE in self.http_listeners:
            vehicle_ctx = build_server_context(
                pki=self.pki,
                policy=self.vehicle.policy,
                require_client_cert=True,
                revocation=revocation,
                families=self.vehicle.families,
            )
            self._bind(VEHICLE, self.vehicle.port, vehicle_ctx, self.asgi.http_factory, mutual=True)
        if CONSOLE in self.http_listeners:
            console_ctx = build_server_context(
                pki=self.pki,
                policy=self.console.policy,
                require_client_cert=False,
                families=self.console.families,
            )
            self._bind(
                CONSOLE, self.console.port, console_ctx, self.asgi.http_factory, mutual=False
            )
        if self._serves_mqtt():
            assert self.mqtt is not None and self.mqtt_upstream is not None
            assert self.mqtt_certificate_binding is not None
            mqtt_ctx = build_server_context(
                pki=self.pki,
                policy=self.mqtt.policy,
                require_client_cert=True,
                revocation=revocation,
                families=self.mqtt.families,
            )
            # Idle vehicles hold these connections for hours: OpenSSL frees each one's read and
            # write buffers between records (about 25 KiB per connection).
            mqtt_ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
            front = MqttFrontFactory(
                *self.mqtt_upstream, certificate_binding=self.mqtt_certificate_binding
            )
            self._bind(MQTT, self.mqtt.port, mqtt_ctx, front, mutual=True)
            self.factories[MQTT].renew_bios = True
        return dict(self.ports)

    def _serves_mqtt(self) -> bool:
        return self.mqtt is not None and self.mqtt_upstream is not None

    def _bind(self, name: str, port: int, ctx: SSL.Context, wrapped: Any, *, mutual: bool) -> None:
        factory = ListenerFactory(
            ctx,
            wrapped,
            name=name,
            mutual_tls=mutual,
            on_handshake=self.on_vehicle_handshake if mutual else None,
            open_connections=self.open_connections if mutual else None,
            limits=self.limits,
        )
        self.factories[name] = factory
        # reactor.listenTCP() with our TCP connection class (see _EagerWriteServer).
        listening = _ListeningPort(port, factory, interface=self.host, reactor=reactor)
        listening.reuse_port = self.reuse_port
        listening.startListening()
        self._ports.append(listening)
        self.ports[name] = listening.getHost().port

    def stop(self) -> None:
        """Stop accepting; call on the reactor thread."""
        if self.open_connections is not None:
            self.open_connections.stop()
        for port in self._ports:
            port.stopListening()
        self._ports.clear()


_reactor_thread: threading.Thread | None = None
_reactor_lock = threading.Lock()


def ensure_reactor_thread() -> None:
    """Run the reactor in a daemon thread (tests and benchmarks); idempotent."""
    global _reactor_thread
    with _reactor_lock:
        if _reactor_thread is not None and _reactor_thread.is_alive():
            return
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(reactor._asyncioEventloop)
            reactor.callWhenRunning(started.set)
            reactor.run(installSignalHandlers=False)

        _reactor_thread = threading.Thread(target=run, name="twisted-reactor", daemon=True)
        _reactor_thread.start()
        if not started.wait(10):
            raise RuntimeError("the Twisted reactor did not start")


def start_in_thread(listeners: OtaListeners) -> dict[str, int]:
    """Bind `listeners` on the background reactor and return their ports."""
    ensure_reactor_thread()
    return blockingCallFromThread(reactor, listeners.listen)


def stop_in_thread(listeners: OtaListeners) -> None:
    blockingCallFromThread(reactor, listeners.stop)


def mqtt_upstream_from_settings() -> tuple[str, int]:
    """The broker the MQTT front forwards to: MQTT_URL, else the embedded broker."""
    from urllib.parse import urlparse

    from django.conf import settings

    if settings.MQTT_URL:
        url = urlparse(settings.MQTT_URL)
        return url.hostname or "127.0.0.1", url.port or 1883
    return "127.0.0.1", int(settings.MQTT_EMBEDDED_PORT)


def recording_sessions(record_identity: Callable[[dict[str, Any]], None]) -> VehicleHandshakeHook:
    """Handshake hook for production: `record_identity` (vehicles.identity.
    record_tls_session_from_listener) writes the vehicle's TLS posture off the reactor thread."""

    def hook(record: HandshakeRecord) -> None:
        reactor.callInThread(_record_session, record, record_identity)

    return hook


def _record_session(
    record: HandshakeRecord, record_identity: Callable[[dict[str, Any]], None]
) -> None:
    try:
        identity = record.identity()
    except Exception:
        logger.exception("could not read the client certificate of a finished handshake")
        return
    record_identity(identity)


def listeners_from_settings(
    *,
    application: Any,
    pki: FleetPki,
    host: str | None = None,
    vehicle_port: int | None = None,
    console_port: int | None = None,
    mqtt_port: int | None = None,
    with_mqtt: bool = True,
    accept: list[int] | None = None,
    allow_classical: bool | None = None,
    mqtt_upstream: tuple[str, int] | None = None,
    on_vehicle_handshake: VehicleHandshakeHook | None = None,
    mqtt_certificate_binding: CertificateBinding | None = None,
    action_logger: Any = None,
    limits: EdgeLimits | None = None,
) -> OtaListeners:
    """The three listeners as settings (and any overrides) describe them."""
    from django.conf import settings

    from pqc.catalogue import build_policy

    policy = build_policy(accept=accept, allow_classical=allow_classical)
    available = pki.server_families()
    families = [f for f in policy.signature_families if f in available]
    # Browsers only verify ECDSA (or RSA) certificates today, so the console always offers one.
    console_families = list(dict.fromkeys(["ecdsa-p256", *families]))
    return OtaListeners(
        application=application,
        pki=pki,
        host=host or settings.OTA_BIND_HOST,
        vehicle=ListenerSpec(
            port=settings.OTA_VEHICLE_PORT if vehicle_port is None else vehicle_port,
            policy=policy,
            families=families,
        ),
        console=ListenerSpec(
            port=settings.OTA_CONSOLE_PORT if console_port is None else console_port,
            policy=policy,
            families=console_families,
        ),
        mqtt=ListenerSpec(
            port=settings.OTA_MQTT_TLS_PORT if mqtt_port is None else mqtt_port,
            policy=policy,
            families=families,
        )
        if with_mqtt
        else None,
        mqtt_upstream=mqtt_upstream or mqtt_upstream_from_settings(),
        on_vehicle_handshake=on_vehicle_handshake,
        mqtt_certificate_binding=mqtt_certificate_binding,
        action_logger=action_logger,
        limits=limits or EdgeLimits.from_settings(),
        request_concurrency=settings.OTA_REQUEST_CONCURRENCY,
    )
