from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import protocol
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.python.failure import Failure

from pqc.pki import VIN_RE, common_name

logger = logging.getLogger(__name__)

CONNECT, CONNACK, PUBLISH, SUBSCRIBE, DISCONNECT = 1, 2, 3, 8, 14
# Topic alias and response topic are the PUBLISH properties that name topics (MQTT 5, 3.3.2.3).
PROP_TOPIC_ALIAS = 0x23
PROP_RESPONSE_TOPIC = 0x08
DEFAULT_MAX_PACKET = 1024 * 1024

# Size in bytes of each MQTT 5 property value, or a reader for variable-size ones.
_FIXED_PROPS = {0x01: 1, 0x02: 4, 0x11: 4, 0x13: 2, 0x17: 1, 0x19: 1, 0x21: 2, 0x22: 2,
                0x23: 2, 0x24: 1, 0x25: 1, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1}  # fmt: skip
_STRING_PROPS = {0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x18, 0x1A, 0x1C, 0x1F}


class MqttViolation(Exception):
    """The client sent something its certificate does not allow; the connection is dropped."""


class MqttMalformed(MqttViolation):
    pass


def read_varint(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """Decode an MQTT variable byte integer; None when more bytes are needed."""
    value, shift = 0, 0
    for i in range(4):
        if pos + i >= len(buf):
            return None
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise MqttMalformed("remaining length longer than 4 bytes")


def _u16(buf: bytes, pos: int) -> tuple[int, int]:
    if pos + 2 > len(buf):
        raise MqttMalformed("packet ends inside a 2-byte integer")
    return int.from_bytes(buf[pos : pos + 2], "big"), pos + 2


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    length, pos = _u16(buf, pos)
    if pos + length > len(buf):
        raise MqttMalformed("packet ends inside a string")
    try:
        return buf[pos : pos + length].decode("utf-8"), pos + length
    except UnicodeDecodeError:
        raise MqttMalformed("string is not UTF-8") from None


def _properties(buf: bytes, pos: int) -> tuple[dict[int, list[Any]], int]:
    decoded = read_varint(buf, pos)
    if decoded is None:
        raise MqttMalformed("packet ends inside the property length")
    length, pos = decoded
    end = pos + length
    if end > len(buf):
        raise MqttMalformed("properties run past the packet")
    props: dict[int, list[Any]] = {}
    while pos < end:
        ident = buf[pos]
        pos += 1
        value: Any
        if ident in _FIXED_PROPS:
            size = _FIXED_PROPS[ident]
            value = int.from_bytes(buf[pos : pos + size], "big")
            pos += size
        elif ident in _STRING_PROPS:
            value, pos = _string(buf, pos)
        elif ident == 0x26:  # user property: a string pair
            key, pos = _string(buf, pos)
            val, pos = _string(buf, pos)
            value = (key, val)
        elif ident == 0x0B:  # subscription identifier
            sub = read_varint(buf, pos)
            if sub is None:
                raise MqttMalformed("packet ends inside a subscription identifier")
            value, pos = sub
        else:
            raise MqttMalformed(f"unknown property 0x{ident:02x}")
        props.setdefault(ident, []).append(value)
    if pos != end:
        raise MqttMalformed("properties overrun their length")
    return props, end


@dataclass(frozen=True)
class ConnectInfo:
    protocol_level: int
    client_id: str


def parse_connect(body: bytes) -> ConnectInfo:
    name, pos = _string(body, 0)
    if name not in {"MQTT", "MQIsdp"} or pos + 4 > len(body):
        raise MqttMalformed(f"CONNECT protocol name {name!r}")
    level = body[pos]
    pos += 4  # level, flags, keep-alive
    if level == 5:
        _, pos = _properties(body, pos)
    client_id, _ = _string(body, pos)
    return ConnectInfo(protocol_level=level, client_id=client_id)


def topic_allowed(topic: str, prefix: str) -> bool:
    # Exact prefix match: `vehicle/VIN/` cannot be widened by a wildcard in the VIN level,
    # and shared subscriptions ($share/...) do not start with it.
    return topic.startswith(prefix) and "\x00" not in topic


@dataclass
class MqttGuard:
    """Checks the client-to-broker packets of one vehicle connection."""

    vin: str
    max_packet: int = DEFAULT_MAX_PACKET
    protocol_level: int | None = None
    aliases: dict[int, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"vehicle/{self.vin}/"

    def check(self, packet_type: int, flags: int, body: bytes) -> None:
        """Raise MqttViolation unless the packet may reach the broker."""
        if self.protocol_level is None:
            if packet_type != CONNECT:
                raise MqttViolation("first packet is not CONNECT")
            info = parse_connect(body)
            if info.client_id != self.vin:
                self.protocol_level = info.protocol_level
                raise MqttViolation(f"client id {info.client_id!r} is not the certificate VIN")
            self.protocol_level = info.protocol_level
            return
        if packet_type == CONNECT:
            raise MqttViolation("second CONNECT")
        if packet_type == PUBLISH:
            self._check_publish(flags, body)
        elif packet_type == SUBSCRIBE:
            self._check_subscribe(body)

    def _check_publish(self, flags: int, body: bytes) -> None:
        topic, pos = _string(body, 0)
        if "+" in topic or "#" in topic:
            raise MqttViolation(f"PUBLISH topic {topic!r} has a wildcard")
        if (flags >> 1) & 3:
            pos += 2  # packet identifier
        if self.protocol_level == 5:
            props, _ = _properties(body, pos)
            alias = props.get(PROP_TOPIC_ALIAS, [None])[0]
            if alias is not None:
                if topic:
                    self.aliases[alias] = topic
                elif alias in self.aliases:
                    topic = self.aliases[alias]
                else:
                    raise MqttViolation(f"topic alias {alias} was never set")
            for response_topic in props.get(PROP_RESPONSE_TOPIC, []):
                if not topic_allowed(response_topic, self.prefix):
                    raise MqttViolation(f"response topic {response_topic!r} outside {self.prefix}")
        if not topic_allowed(topic, self.prefix):
            raise MqttViolation(f"PUBLISH to {topic!r} outside {self.prefix}")

    def _check_subscribe(self, body: bytes) -> None:
        _, pos = _u16(body, 0)
        if self.protocol_level == 5:
            _, pos = _properties(body, pos)
        if pos >= len(body):
            raise MqttMalformed("SUBSCRIBE without a topic filter")
        while pos < len(body):
            topic_filter, pos = _string(body, pos)
            pos += 1  # subscription options
            if not topic_allowed(topic_filter, self.prefix):
                raise MqttViolation(f"SUBSCRIBE to {topic_filter!r} outside {self.prefix}")

    def refusal(self, packet_type: int) -> bytes:
        """What to tell the client before closing: CONNACK "not authorized" or a DISCONNECT."""
        if packet_type == CONNECT and self.protocol_level is not None:
            if self.protocol_level == 5:
                return bytes([CONNACK << 4, 3, 0, 0x87, 0])
            return bytes([CONNACK << 4, 2, 0, 5])
        if self.protocol_level == 5:
            return bytes([DISCONNECT << 4, 2, 0x87, 0])
        return b""


def split_packets(buf: bytearray, max_packet: int) -> list[tuple[int, int, bytes, bytes]]:
    """Remove complete packets from `buf`: (type, flags, body, raw bytes) each."""
    packets = []
    while len(buf) >= 2:
        decoded = read_varint(buf, 1)
        if decoded is None:
            break
        length, start = decoded
        if length > max_packet:
            raise MqttViolation(f"packet of {length} bytes exceeds {max_packet}")
        if len(buf) < start + length:
            break
        raw = bytes(buf[: start + length])
        del buf[: start + length]
        packets.append((raw[0] >> 4, raw[0] & 0x0F, raw[start:], raw))
    return packets


class _UpstreamProtocol(protocol.Protocol):
    def __init__(self, front: MqttFrontProtocol) -> None:
        self.front = front

    def connectionMade(self) -> None:  # noqa: N802
        self.front.upstream_ready(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.front.transport.write(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self.front.transport.loseConnection()


class _UpstreamFactory(protocol.Factory):
    def __init__(self, front: MqttFrontProtocol) -> None:
        self.front = front

    def buildProtocol(self, addr: Any) -> _UpstreamProtocol:  # noqa: N802
        return _UpstreamProtocol(self.front)


class MqttFrontProtocol(protocol.Protocol):
    """One vehicle's MQTT session: checked on the way in, passed through on the way out."""

    factory: MqttFrontFactory

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.guard: MqttGuard | None = None
        self.upstream: _UpstreamProtocol | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def connectionMade(self) -> None:  # noqa: N802
        endpoint = TCP4ClientEndpoint(
            self.factory.reactor, self.factory.upstream_host, self.factory.upstream_port, timeout=10
        )
        deferred = endpoint.connect(_UpstreamFactory(self))
        deferred.addErrback(self._upstream_failed)

    def _upstream_failed(self, failure: Failure) -> None:
        logger.error("MQTT upstream %s:%s unreachable: %s", self.factory.upstream_host,
                     self.factory.upstream_port, failure.getErrorMessage())  # fmt: skip
        self.transport.loseConnection()

    def upstream_ready(self, upstream: _UpstreamProtocol) -> None:
        if self.closed:
            upstream.transport.loseConnection()
            return
        self.upstream = upstream
        for data in self.pending:
            upstream.transport.write(data)
        self.pending.clear()

    def _vin(self) -> str | None:
        cert = self.transport.getPeerCertificate()
        if cert is None:
            return None
        vin = common_name(cert.to_cryptography())
        return vin if VIN_RE.match(vin) else None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.closed:
            return
        if self.guard is None:
            vin = self._vin()
            if vin is None:
                self._drop("no vehicle certificate", b"")
                return
            self.guard = MqttGuard(vin=vin, max_packet=self.factory.max_packet)
        self.buffer += data
        try:
            for packet_type, flags, body, raw in split_packets(self.buffer, self.guard.max_packet):
                try:
                    self.guard.check(packet_type, flags, body)
                except MqttViolation as exc:
                    self._drop(str(exc), self.guard.refusal(packet_type))
                    return
                self._forward(raw)
        except MqttViolation as exc:
            self._drop(str(exc), self.guard.refusal(0))

    def _forward(self, raw: bytes) -> None:
        if self.upstream is None:
            self.pending.append(raw)
        else:
            self.upstream.transport.write(raw)

    def _drop(self, reason: str, farewell: bytes) -> None:
        vin = self.guard.vin if self.guard else None
        logger.warning("MQTT front dropped vehicle %s: %s", vin, reason)
        self.closed = True
        if farewell:
            self.transport.write(farewell)
        self.transport.loseConnection()
        if self.upstream is not None:
            self.upstream.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self.closed = True
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


class MqttFrontFactory(protocol.Factory):
    """Builds one guarded pass-through per vehicle connection to the broker."""

    protocol = MqttFrontProtocol

    def __init__(
        self, upstream_host: str, upstream_port: int, *, max_packet: int = DEFAULT_MAX_PACKET
    ) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.max_packet = max_packet
