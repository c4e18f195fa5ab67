"""A long-lived TLS connection gives back what its handshake needed once that is over."""

from __future__ import annotations

import pytest
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient
from zope.interface import implementer

from pqc.catalogue import build_policy, get_configuration
from pqc.server import ListenerFactory
from pqc.tests.conftest import VIN_A, FleetMaterial
from pqc.tls import build_client_context, build_server_context


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.transport.write(data)


class _Collect(Protocol):
    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data


@implementer(IOpenSSLClientConnectionCreator)
class _ClientCreator:
    def __init__(self, ctx: SSL.Context) -> None:
        self.ctx = ctx

    def clientConnectionForTLS(self, protocol: object) -> SSL.Connection:  # noqa: N802
        conn = SSL.Connection(self.ctx, None)
        conn.set_connect_state()
        conn.set_tlsext_host_name(b"localhost")
        return conn


def _pair(fleet: FleetMaterial, family: str, config_id: int, *, renew: bool):
    policy = build_policy()
    server_ctx = build_server_context(
        pki=fleet.pki, policy=policy, require_client_cert=True,
        families=[f for f in policy.signature_families if f in fleet.pki.server_families()],
    )  # fmt: skip
    server_ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    credentials = fleet.credentials[(VIN_A, family)]
    client_ctx = build_client_context(
        config=get_configuration(config_id), cert_path=credentials.cert,
        key_path=credentials.key, ca_path=credentials.ca,
    )  # fmt: skip
    server_factory = ListenerFactory(
        server_ctx, Factory.forProtocol(_Echo), name="mqtt", mutual_tls=True
    )
    server_factory.renew_bios = renew
    client_factory = TLSMemoryBIOFactory(
        _ClientCreator(client_ctx), True, Factory.forProtocol(_Collect)
    )
    # Small TLS writes wait for the next reactor pass: this clock is that reactor.
    clock = Clock()
    server_factory._clock = client_factory._clock = clock
    client, server, pump = connectedServerAndClient(
        lambda: server_factory.buildProtocol(None),
        lambda: client_factory.buildProtocol(None),
    )

    def exchange() -> None:
        for _ in range(4):
            clock.advance(0)
            pump.flush()

    return client, server, exchange


@pytest.mark.parametrize(("family", "config_id"), [("ecdsa-p256", 1), ("ml-dsa-65", 13)])
def test_mqtt_listener_connection_swaps_in_empty_bios_after_the_handshake(
    fleet: FleetMaterial, family: str, config_id: int
) -> None:
    client, server, exchange = _pair(fleet, family, config_id, renew=True)
    exchange()
    tls = server._tlsConnection
    assert server._handshakeDone and server._bios_renewed
    renewed = (tls._into_ssl, tls._from_ssl)

    client.write(b"ping " * 1000)
    exchange()

    # The connection goes on over the new pair, both ways and in order.
    assert client.wrappedProtocol.received == b"ping " * 1000
    assert (tls._into_ssl, tls._from_ssl) == renewed
    assert server.ota_record is not None


def test_short_lived_listeners_keep_their_bios(fleet: FleetMaterial) -> None:
    client, server, exchange = _pair(fleet, "ecdsa-p256", 1, renew=False)
    tls = server._tlsConnection
    first = (tls._into_ssl, tls._from_ssl)
    exchange()
    client.write(b"hello")
    exchange()

    assert client.wrappedProtocol.received == b"hello"
    assert (tls._into_ssl, tls._from_ssl) == first
    assert not server._bios_renewed


@pytest.mark.slow
def test_mqtt_front_listener_renews_the_bios_of_its_connections(fleet: FleetMaterial, db) -> None:
    import time

    from pqc.client import open_connection
    from pqc.tests.conftest import start_listeners

    # No broker is needed: the BIOs are renewed once the handshake is over, before any CONNECT.
    running = start_listeners(fleet, hook=None, mqtt_upstream=("127.0.0.1", 9))
    try:
        factory = running.listeners.factories["mqtt"]
        connection = open_connection(
            "127.0.0.1", running.ports["mqtt"], config=get_configuration(13),
            credentials=fleet.credentials[(VIN_A, "ml-dsa-65")], server_hostname="localhost",
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not factory.protocols and time.monotonic() < deadline:
            time.sleep(0.05)
        (server,) = list(factory.protocols)
        while not server._bios_renewed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server._bios_renewed
        connection.close()
    finally:
        from pqc.server import stop_in_thread

        stop_in_thread(running.listeners)


@pytest.mark.slow
def test_mqtt_front_closes_the_vehicle_connection_when_the_broker_is_unreachable(
    fleet: FleetMaterial, db
) -> None:
    import socket

    from pqc.client import open_connection
    from pqc.mqtt_front import CONNECT
    from pqc.server import stop_in_thread
    from pqc.tests.conftest import start_listeners
    from pqc.tests.test_mqtt_front import connect_body, mqtt_packet

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    running = start_listeners(fleet, hook=None, mqtt_upstream=("127.0.0.1", closed_port))
    try:
        connection = open_connection(
            "127.0.0.1", running.ports["mqtt"], config=get_configuration(1),
            credentials=fleet.credentials[(VIN_A, "ecdsa-p256")], server_hostname="localhost",
        )  # fmt: skip
        connection.sendall(mqtt_packet(CONNECT, connect_body(VIN_A)))
        # No CONNACK: the front gives up on the broker and closes the vehicle's connection.
        assert connection.recv(1024) == b""
        connection.close()
    finally:
        stop_in_thread(running.listeners)
