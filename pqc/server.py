from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# daphne.server installs Twisted's asyncio reactor, so it must come before the reactor import
# below (alphabetical order keeps it there).
import daphne.server
from daphne.http_protocol import HTTPFactory
from daphne.ws_protocol import WebSocketFactory
from OpenSSL import SSL
from OpenSSL._util import ffi, lib
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IReactorTCP
from twisted.internet.threads import blockingCallFromThread
from twisted.protocols.tls import (
    BufferingTLSTransport,
    TLSMemoryBIOFactory,
    TLSMemoryBIOProtocol,
)
from zope.interface import implementer

from pqc.catalogue import ServerPolicy
from pqc.mqtt_front import MqttFrontFactory
from pqc.pki import FleetPki
from pqc.tls import HandshakeRecord, RevocationList, build_server_context, capture_handshake

logger = logging.getLogger(__name__)
reactor: Any = _reactor

VEHICLE = "vehicle"
CONSOLE = "console"
MQTT = "mqtt"

VehicleHandshakeHook = Callable[[HandshakeRecord], None]


@implementer(IOpenSSLServerConnectionCreator)
class _ConnectionCreator:
    """Hands Twisted a new OpenSSL connection on our context for each accepted socket."""

    def __init__(self, ctx: SSL.Context) -> None:
        self.ctx = ctx

    def serverConnectionForTLS(self, protocol: TLSMemoryBIOProtocol) -> SSL.Connection:  # noqa: N802
        return SSL.Connection(self.ctx, None)


class _NoDelayTLSProtocol(BufferingTLSTransport):
    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        # A TLS flight is written in several small records; Nagle would hold the later ones
        # back until the client acknowledges the first.
        with contextlib.suppress(AttributeError, OSError):
            transport.setTcpNoDelay(True)
        super().makeConnection(transport)


class ListenerFactory(TLSMemoryBIOFactory):
    """TLS wrapper that remembers which listener a connection came in on."""

    protocol = _NoDelayTLSProtocol

    def __init__(self, ctx: SSL.Context, wrapped: Any, *, name: str) -> None:
        super().__init__(_ConnectionCreator(ctx), False, wrapped)
        self.listener_name = name


class HandshakeRegistry:
    """Vehicle identities of finished handshakes, keyed weakly by OpenSSL connection.

    OpenSSL reports handshake completion through the info callback; TLS 1.3 servers can
    report it again after sending session tickets, so each connection is handled once.
    """

    def __init__(self, on_vehicle_handshake: VehicleHandshakeHook | None) -> None:
        self._records: weakref.WeakKeyDictionary[SSL.Connection, HandshakeRecord] = (
            weakref.WeakKeyDictionary()
        )
        self._hook = on_vehicle_handshake

    def info_callback(self, conn: SSL.Connection, where: int, ret: int) -> None:
        if not where & SSL.SSL_CB_HANDSHAKE_DONE or conn in self._records:
            return
        record = capture_handshake(conn)
        if record is None:
            return
        self._records[conn] = record
        if self._hook is not None:
            try:
                self._hook(record)
            except Exception:
                logger.exception("vehicle handshake hook failed")

    def identity(self, conn: SSL.Connection) -> dict[str, Any] | None:
        record = self._records.get(conn)
        return record.identity() if record is not None else None

    def install(self, ctx: SSL.Context) -> None:
        """Register on `ctx` through cffi directly.

        OpenSSL calls the info callback at every handshake state (about 24 times per
        handshake); pyOpenSSL's wrapper costs about 20 us per call, so this thinner one
        filters for HANDSHAKE_DONE before touching any Python object.
        """
        done = SSL.SSL_CB_HANDSHAKE_DONE

        def callback(ssl: Any, where: int, ret: int) -> None:
            if not where & done:
                return
            try:
                conn = SSL.Connection._reverse_mapping[ssl]
                self.info_callback(conn, where, ret)
            except Exception:  # an exception must never cross into OpenSSL
                logger.exception("TLS handshake bookkeeping failed")

        handle = ffi.callback("void (*)(SSL *, int, int)", callback)
        ctx._ota_info_callback = handle  # type: ignore[attr-defined]  # keep it alive
        lib.SSL_CTX_set_info_callback(ctx._context, handle)


def _tls_transport(protocol: Any) -> TLSMemoryBIOProtocol | None:
    """The TLS layer under a daphne HTTP request or WebSocket protocol."""
    channel = getattr(protocol, "channel", None)
    transport = getattr(channel, "transport", None) or getattr(protocol, "transport", None)
    return transport if isinstance(transport, TLSMemoryBIOProtocol) else None


class OtaAsgiServer(daphne.server.Server):
    """Daphne's HTTP and WebSocket handling behind our PQC-TLS listeners.

    Only this layer writes `scope["ota_tls"]` (the verified vehicle identity) and
    `scope["ota_listener"]`; nothing a client sends can reach those keys.
    """

    def __init__(
        self, application: Any, *, registry: HandshakeRegistry, action_logger: Any = None
    ) -> None:
        super().__init__(
            application, endpoints=["pqc-tls"], signal_handlers=False, action_logger=action_logger
        )
        self.registry = registry

    def prepare(self) -> None:
        """What daphne's run() does before reactor.run(), minus its endpoint parsing."""
        self.connections = {}
        self.http_factory = HTTPFactory(self)
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

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        scope.pop("ota_tls", None)
        transport = _tls_transport(protocol)
        if transport is not None:
            listener = getattr(transport.factory, "listener_name", None)
            scope["ota_listener"] = listener
            if listener == VEHICLE:
                identity = self.registry.identity(transport.getHandle())
                if identity is not None:
                    scope["ota_tls"] = dict(identity)
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
    action_logger: Any = None
    ports: dict[str, int] = field(default_factory=dict)
    _ports: list[Any] = field(default_factory=list)

    def listen(self) -> dict[str, int]:
        """Bind every listener; call on the reactor thread. Returns the bound ports."""
        registry = HandshakeRegistry(self.on_vehicle_handshake)
        revocation = RevocationList(self.pki)
        self.asgi = OtaAsgiServer(
            self.application, registry=registry, action_logger=self.action_logger
        )
        self.asgi.prepare()
        vehicle_ctx = build_server_context(
            pki=self.pki,
            policy=self.vehicle.policy,
            require_client_cert=True,
            revocation=revocation,
            families=self.vehicle.families,
        )
        registry.install(vehicle_ctx)
        console_ctx = build_server_context(
            pki=self.pki,
            policy=self.console.policy,
            require_client_cert=False,
            families=self.console.families,
        )
        tcp: IReactorTCP = reactor
        self._bind(tcp, VEHICLE, self.vehicle.port, vehicle_ctx, self.asgi.http_factory)
        self._bind(tcp, CONSOLE, self.console.port, console_ctx, self.asgi.http_factory)
        if self.mqtt is not None and self.mqtt_upstream is not None:
            mqtt_ctx = build_server_context(
                pki=self.pki,
                policy=self.mqtt.policy,
                require_client_cert=True,
                revocation=revocation,
                families=self.mqtt.families,
            )
            registry.install(mqtt_ctx)
            front = MqttFrontFactory(*self.mqtt_upstream)
            self._bind(tcp, MQTT, self.mqtt.port, mqtt_ctx, front)
        return dict(self.ports)

    def _bind(self, tcp: IReactorTCP, name: str, port: int, ctx: SSL.Context, wrapped: Any) -> None:
        listening = tcp.listenTCP(
            port, ListenerFactory(ctx, wrapped, name=name), interface=self.host
        )
        self._ports.append(listening)
        self.ports[name] = listening.getHost().port

    def stop(self) -> None:
        """Stop accepting; call on the reactor thread."""
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


def record_sessions_in_background(record: HandshakeRecord) -> None:
    """Handshake hook for production: write the vehicle's TLS posture off the reactor thread."""
    reactor.callInThread(_record_session, record)


def _record_session(record: HandshakeRecord) -> None:
    from pqc.services import record_vehicle_session_from_listener

    try:
        identity = record.identity()
    except Exception:
        logger.exception("could not read the client certificate of a finished handshake")
        return
    record_vehicle_session_from_listener(identity)


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
    on_vehicle_handshake: VehicleHandshakeHook | None = record_sessions_in_background,
    action_logger: Any = None,
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
        action_logger=action_logger,
    )
