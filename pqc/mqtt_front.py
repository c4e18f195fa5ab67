"""The MQTT TLS front: each vehicle's packets are checked against its certificate's VIN.

A vehicle may publish only on its own vehicle -> server topics and subscribe only to its own
server -> vehicle topics (docs/PROTOCOL.md, core/mqtt/topics.py); its will is a publication
and obeys the same rules. The front opens the broker connection only once the certificate is
verified, the CONNECT checked and the certificate found bound to the VIN, and it connects with
its own broker credentials, never the vehicle's.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection as db_connection
from twisted.internet import protocol, threads
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from core.mqtt.connection import broker_address
from core.mqtt.topics import DEFAULT_ROOT, INBOUND_KINDS, OUTBOUND_KINDS, STATUS, topic_for
from core.mqtt.topics import topic_root as configured_topic_root
from pqc.pki import VIN_RE, common_name, fingerprint

logger = logging.getLogger(__name__)

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)
DEFAULT_MAX_PACKET = 1024 * 1024

# MQTT 5 properties (section 2.2.2.2) that name topics or carry authentication.
PROP_RESPONSE_TOPIC = 0x08
PROP_AUTHENTICATION_METHOD = 0x15
PROP_TOPIC_ALIAS = 0x23

# Size in bytes of each fixed-size MQTT 5 property value.
_FIXED_PROPS = {0x01: 1, 0x02: 4, 0x11: 4, 0x13: 2, 0x17: 1, 0x18: 4, 0x19: 1, 0x21: 2,
                0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1}  # fmt: skip
_STRING_PROPS = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
_BINARY_PROPS = {0x09, 0x16}
_USER_PROPERTY = 0x26
_SUBSCRIPTION_IDENTIFIER = 0x0B

# Which properties a client may put in each of its packets (MQTT 5, 2.2.2.2); anything else is
# a protocol error, and checking the list keeps the will from hiding a topic alias.
_CONNECT_PROPS = frozenset({0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27})
_WILL_PROPS = frozenset({0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26})
_PUBLISH_PROPS = frozenset({0x01, 0x02, 0x03, 0x08, 0x09, 0x23, 0x26})
_SUBSCRIBE_PROPS = frozenset({0x0B, 0x26})
_UNSUBSCRIBE_PROPS = frozenset({0x26})
_ACK_PROPS = frozenset({0x1F, 0x26})
_DISCONNECT_PROPS = frozenset({0x11, 0x1F, 0x26})

# Fixed-header flags each client packet must carry (MQTT 3.1.1 / 5, 2.1.3); PUBLISH varies.
_REQUIRED_FLAGS = {PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBSCRIBE: 2, UNSUBSCRIBE: 2,
                   PINGREQ: 0, DISCONNECT: 0}  # fmt: skip
_PROTOCOL_NAMES = {3: "MQIsdp", 4: "MQTT", 5: "MQTT"}

# CONNECT flags (3.1.2.3).
_USERNAME, _PASSWORD, _WILL_RETAIN, _WILL_FLAG, _RESERVED = 0x80, 0x40, 0x20, 0x04, 0x01

CONNACK_NOT_AUTHORIZED_V3 = 5
CONNACK_BAD_PROTOCOL_V3 = 1
REASON_MALFORMED = 0x81
REASON_NOT_AUTHORIZED = 0x87
REASON_BAD_PROTOCOL = 0x84


class MqttViolation(Exception):
    """The client sent something its certificate does not allow; the connection is dropped."""

    reason_code = REASON_NOT_AUTHORIZED


class MqttMalformed(MqttViolation):
    reason_code = REASON_MALFORMED


class MqttUnsupportedProtocol(MqttViolation):
    reason_code = REASON_BAD_PROTOCOL


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


def encode_varint(value: int) -> bytes:
    encoded = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        encoded.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(encoded)


def _u16(buf: bytes, pos: int) -> tuple[int, int]:
    if pos + 2 > len(buf):
        raise MqttMalformed("packet ends inside a 2-byte integer")
    return int.from_bytes(buf[pos : pos + 2], "big"), pos + 2


def _binary(buf: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _u16(buf, pos)
    if pos + length > len(buf):
        raise MqttMalformed("packet ends inside a string")
    return buf[pos : pos + length], pos + length


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    data, pos = _binary(buf, pos)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MqttMalformed("string is not UTF-8") from None
    if "\x00" in text:
        raise MqttMalformed("string contains U+0000")
    return text, pos


def _properties(
    buf: bytes, pos: int, allowed: frozenset[int], where: str
) -> tuple[dict[int, list[Any]], int]:
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
        if ident not in allowed:
            raise MqttMalformed(f"property 0x{ident:02x} is not allowed in {where}")
        value: Any
        if ident in _FIXED_PROPS:
            size = _FIXED_PROPS[ident]
            if pos + size > end:
                raise MqttMalformed("properties overrun their length")
            value = int.from_bytes(buf[pos : pos + size], "big")
            pos += size
        elif ident in _STRING_PROPS:
            value, pos = _string(buf, pos)
        elif ident in _BINARY_PROPS:
            value, pos = _binary(buf, pos)
        elif ident == _USER_PROPERTY:
            key, pos = _string(buf, pos)
            val, pos = _string(buf, pos)
            value = (key, val)
        else:  # subscription identifier
            sub = read_varint(buf, pos)
            if sub is None:
                raise MqttMalformed("packet ends inside a subscription identifier")
            value, pos = sub
        props.setdefault(ident, []).append(value)
    if pos != end:
        raise MqttMalformed("properties overrun their length")
    return props, end


@dataclass(frozen=True)
class Will:
    topic: str
    qos: int
    retain: bool
    properties: dict[int, list[Any]]


@dataclass(frozen=True)
class ConnectInfo:
    protocol_level: int
    client_id: str
    keep_alive: int
    will: Will | None
    has_credentials: bool
    authentication_method: str | None


def parse_connect(body: bytes) -> ConnectInfo:
    """Decode a CONNECT body far enough to judge it (MQTT 3.1, 3.1.1 and 5)."""
    name, pos = _string(body, 0)
    if pos + 4 > len(body):
        raise MqttMalformed("CONNECT ends inside its header")
    level, flags = body[pos], body[pos + 1]
    keep_alive = int.from_bytes(body[pos + 2 : pos + 4], "big")
    pos += 4
    if _PROTOCOL_NAMES.get(level) != name:
        raise MqttUnsupportedProtocol(f"protocol {name!r} level {level}")
    if flags & _RESERVED:
        raise MqttMalformed("CONNECT reserved flag is set")
    will_qos = (flags >> 3) & 3
    if will_qos == 3:
        raise MqttMalformed("will QoS 3")
    has_will = bool(flags & _WILL_FLAG)
    if not has_will and (will_qos or flags & _WILL_RETAIN):
        raise MqttMalformed("will QoS or retain set without a will")
    connect_props: dict[int, list[Any]] = {}
    if level == 5:
        connect_props, pos = _properties(body, pos, _CONNECT_PROPS, "CONNECT")
    client_id, pos = _string(body, pos)
    will = None
    if has_will:
        will_props: dict[int, list[Any]] = {}
        if level == 5:
            will_props, pos = _properties(body, pos, _WILL_PROPS, "the will")
        will_topic, pos = _string(body, pos)
        _, pos = _binary(body, pos)  # will payload
        will = Will(
            topic=will_topic, qos=will_qos, retain=bool(flags & _WILL_RETAIN), properties=will_props
        )
    return ConnectInfo(
        protocol_level=level,
        client_id=client_id,
        keep_alive=keep_alive,
        will=will,
        has_credentials=bool(flags & (_USERNAME | _PASSWORD)),
        authentication_method=connect_props.get(PROP_AUTHENTICATION_METHOD, [None])[0],
    )


def _peek_level(body: bytes) -> int | None:
    name_length = int.from_bytes(body[0:2], "big")
    level = body[2 + name_length] if 2 + name_length < len(body) else None
    return level if level in _PROTOCOL_NAMES else None


def connect_with_credentials(raw: bytes, username: str | None, password: str | None) -> bytes:
    """The vehicle's CONNECT packet (checked, so without credentials) carrying the front's own.

    Username and password are the last fields of a CONNECT, so they are appended and their flags
    set; nothing else changes.
    """
    if not username and password is None:
        return raw
    decoded = read_varint(raw, 1)
    assert decoded is not None  # a checked, complete packet
    _, start = decoded
    body = bytearray(raw[start:])
    flags_at = 2 + int.from_bytes(body[0:2], "big") + 1  # protocol name, then level
    level = body[flags_at - 1]
    extra = b""
    if username:
        body[flags_at] |= _USERNAME
        encoded = username.encode()
        extra += len(encoded).to_bytes(2, "big") + encoded
    # MQTT 3.1.1 allows a password only after a username (3.1.2.9).
    if password is not None and (username or level == 5):
        body[flags_at] |= _PASSWORD
        encoded = password.encode()
        extra += len(encoded).to_bytes(2, "big") + encoded
    body += extra
    return bytes([raw[0]]) + encode_varint(len(body)) + bytes(body)


@dataclass
class MqttGuard:
    """Checks the client-to-broker packets of one vehicle connection."""

    vin: str
    root: str = DEFAULT_ROOT
    max_packet: int = DEFAULT_MAX_PACKET
    protocol_level: int | None = None
    keep_alive: int = 0
    aliases: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        own = {kind: topic_for(self.vin, kind, root=self.root) for kind in INBOUND_KINDS}
        self.publish_topics = frozenset(own.values())
        # Presence is the only retained vehicle -> server topic (docs/PROTOCOL.md).
        self.retained_topics = frozenset({own[STATUS]})
        self.subscribe_filters = frozenset(
            topic_for(self.vin, kind, root=self.root) for kind in OUTBOUND_KINDS
        )

    def check(self, packet_type: int, flags: int, body: bytes) -> None:
        """Raise MqttViolation unless the packet may reach the broker."""
        if self.protocol_level is None:
            if packet_type != CONNECT:
                raise MqttViolation("first packet is not CONNECT")
            self._check_connect(flags, body)
            return
        if packet_type == CONNECT:
            raise MqttViolation("second CONNECT")
        if packet_type == PUBLISH:
            self._check_publish(flags, body)
            return
        if packet_type == AUTH:
            raise MqttViolation("enhanced authentication is not offered")
        if packet_type not in _REQUIRED_FLAGS:
            raise MqttMalformed(f"packet type {packet_type} is not sent by clients")
        if flags != _REQUIRED_FLAGS[packet_type]:
            raise MqttMalformed(f"packet type {packet_type} with fixed-header flags {flags:#x}")
        if packet_type == SUBSCRIBE:
            self._check_subscribe(body)
        elif packet_type == UNSUBSCRIBE:
            self._check_unsubscribe(body)
        elif packet_type == PINGREQ and body:
            raise MqttMalformed("PINGREQ with a body")

    def _check_connect(self, flags: int, body: bytes) -> None:
        if flags:
            raise MqttMalformed("CONNECT with fixed-header flags")
        try:
            info = parse_connect(body)
        except MqttUnsupportedProtocol:
            self.protocol_level = 0
            raise
        except MqttViolation:
            # Refuse in the client's own version when its CONNECT got that far.
            self.protocol_level = _peek_level(body)
            raise
        # From here on refusals speak the client's protocol version.
        self.protocol_level = info.protocol_level
        self.keep_alive = info.keep_alive
        if info.client_id != self.vin:
            raise MqttViolation(f"client id {info.client_id!r} is not the certificate VIN")
        if info.has_credentials:
            raise MqttViolation("CONNECT carries broker credentials")
        if info.authentication_method is not None:
            raise MqttViolation("enhanced authentication is not offered")
        if info.will is not None:
            self._check_publication(
                info.will.topic, retain=info.will.retain, properties=info.will.properties,
                what="will",
            )  # fmt: skip

    def _check_publication(
        self, topic: str, *, retain: bool, properties: dict[int, list[Any]], what: str
    ) -> None:
        """The rules a PUBLISH and a will share: topic, retain flag, response topic."""
        if topic not in self.publish_topics:
            raise MqttViolation(f"{what} on {topic!r}, not a vehicle -> server topic of {self.vin}")
        if retain and topic not in self.retained_topics:
            raise MqttViolation(f"{what} on {topic!r} may not be retained")
        for response_topic in properties.get(PROP_RESPONSE_TOPIC, []):
            # A response topic is where the server would answer, so it must be the vehicle's own
            # inbox, never another vehicle's.
            if response_topic not in self.subscribe_filters:
                raise MqttViolation(f"{what} response topic {response_topic!r} is not allowed")

    def _check_publish(self, flags: int, body: bytes) -> None:
        qos, retain = (flags >> 1) & 3, bool(flags & 1)
        if qos == 3:
            raise MqttMalformed("PUBLISH QoS 3")
        if flags & 0x08 and qos == 0:
            raise MqttMalformed("PUBLISH DUP at QoS 0")
        topic, pos = _string(body, 0)
        if qos:
            packet_id, pos = _u16(body, pos)
            if packet_id == 0:
                raise MqttMalformed("PUBLISH packet identifier 0")
        props: dict[int, list[Any]] = {}
        if self.protocol_level == 5:
            props, _ = _properties(body, pos, _PUBLISH_PROPS, "PUBLISH")
        alias = props.get(PROP_TOPIC_ALIAS, [None])[0]
        if alias == 0:
            raise MqttMalformed("topic alias 0")
        if not topic:
            if alias is None:
                raise MqttMalformed("PUBLISH without a topic")
            if alias not in self.aliases:
                raise MqttViolation(f"topic alias {alias} was never set")
            topic = self.aliases[alias]
        self._check_publication(topic, retain=retain, properties=props, what="PUBLISH")
        if alias is not None:
            # Only a topic that passed the check becomes the alias's meaning.
            self.aliases[alias] = topic

    def _topic_filters(self, body: bytes, *, with_options: bool, what: str) -> list[str]:
        packet_id, pos = _u16(body, 0)
        if packet_id == 0:
            raise MqttMalformed(f"{what} packet identifier 0")
        if self.protocol_level == 5:
            allowed = _SUBSCRIBE_PROPS if with_options else _UNSUBSCRIBE_PROPS
            _, pos = _properties(body, pos, allowed, what)
        if pos >= len(body):
            raise MqttMalformed(f"{what} without a topic filter")
        filters = []
        while pos < len(body):
            topic_filter, pos = _string(body, pos)
            if with_options:
                if pos >= len(body):
                    raise MqttMalformed("SUBSCRIBE ends before its subscription options")
                self._check_subscription_options(body[pos])
                pos += 1
            filters.append(topic_filter)
        return filters

    def _check_subscription_options(self, options: int) -> None:
        reserved = 0xC0 if self.protocol_level == 5 else 0xFC
        if options & reserved or options & 3 == 3 or (options >> 4) & 3 == 3:
            raise MqttMalformed(f"subscription options {options:#04x}")

    def _check_subscribe(self, body: bytes) -> None:
        for topic_filter in self._topic_filters(body, with_options=True, what="SUBSCRIBE"):
            if topic_filter not in self.subscribe_filters:
                raise MqttViolation(f"SUBSCRIBE to {topic_filter!r}, not a topic of {self.vin}")

    def _check_unsubscribe(self, body: bytes) -> None:
        for topic_filter in self._topic_filters(body, with_options=False, what="UNSUBSCRIBE"):
            if topic_filter not in self.subscribe_filters:
                raise MqttViolation(f"UNSUBSCRIBE from {topic_filter!r}, not a topic of {self.vin}")

    def refusal(self, packet_type: int, error: MqttViolation | None = None) -> bytes:
        """What to tell the client before closing: a refusing CONNACK, or a DISCONNECT."""
        reason = error.reason_code if error is not None else REASON_NOT_AUTHORIZED
        if packet_type == CONNECT and self.protocol_level is not None:
            if self.protocol_level == 5:
                return bytes([CONNACK << 4, 3, 0, REASON_NOT_AUTHORIZED, 0])
            if self.protocol_level == 0 or isinstance(error, MqttUnsupportedProtocol):
                return bytes([CONNACK << 4, 2, 0, CONNACK_BAD_PROTOCOL_V3])
            return bytes([CONNACK << 4, 2, 0, CONNACK_NOT_AUTHORIZED_V3])
        if self.protocol_level == 5:
            return bytes([DISCONNECT << 4, 2, reason, 0])
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


def _kind(violation: MqttViolation) -> str:
    return "malformed" if isinstance(violation, MqttMalformed) else "not_authorized"


# Whether the certificate with this fingerprint may act as this VIN: the rule of the vehicle API
# (vehicles.identity.certificate_speaks_for), given to the front by the process that starts it.
CertificateBinding = Callable[[str, str], bool]


def _certificate_speaks_for_in_thread(
    binding: CertificateBinding, vin: str, cert_fingerprint: str
) -> bool:
    try:
        return binding(vin, cert_fingerprint)
    finally:
        # Reactor pool threads live on; a connection held open here would outlive its use.
        db_connection.close()


class _UpstreamProtocol(protocol.Protocol):
    def __init__(self, front: MqttFrontProtocol) -> None:
        self.front = front

    def connectionMade(self) -> None:  # noqa: N802
        self.front.upstream_ready(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.front.transport.write(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self.front.transport.loseConnection()


class _UpstreamFactory(protocol.ClientFactory):
    # One factory per vehicle connection: no "Starting factory" log line for each.
    noisy = False

    def __init__(self, front: MqttFrontProtocol) -> None:
        self.front = front

    def buildProtocol(self, addr: Any) -> _UpstreamProtocol:  # noqa: N802
        return _UpstreamProtocol(self.front)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        self.front._upstream_failed(reason)


class MqttFrontProtocol(protocol.Protocol, TimeoutMixin):
    """One vehicle's MQTT session: checked on the way in, passed through on the way out."""

    factory: MqttFrontFactory

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.guard: MqttGuard | None = None
        self.upstream: _UpstreamProtocol | None = None
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.closed = False
        self.peer_ip: str | None = None
        # From the client certificate, once the handshake has finished.
        self.vin = ""
        self.cert_fingerprint = ""
        self._abort_call: Any = None

    def connectionMade(self) -> None:  # noqa: N802
        self.callLater = self.factory.reactor.callLater
        self.peer_ip = str(getattr(self.transport.getPeer(), "host", ""))
        # Covers the TLS handshake too: a complete CONNECT must arrive within this time.
        self.setTimeout(self.factory.connect_timeout)

    def timeoutConnection(self) -> None:  # noqa: N802
        if self.guard is None or self.guard.protocol_level is None:
            self._drop("timeout", "no CONNECT in time", b"")
        else:
            self._drop("timeout", "silent past 1.5 times its keep-alive", b"")

    def _certificate(self) -> tuple[str, str] | None:
        """VIN and fingerprint of the verified client certificate."""
        cert = self.transport.getPeerCertificate()
        if cert is None:
            return None
        parsed = cert.to_cryptography()
        vin = common_name(parsed)
        return (vin, fingerprint(parsed)) if VIN_RE.match(vin) else None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.closed:
            return
        if self.guard is None:
            identity = self._certificate()
            if identity is None:
                self._drop("not_authorized", "no vehicle certificate", b"")
                return
            self.vin, self.cert_fingerprint = identity
            self.guard = MqttGuard(
                vin=self.vin, root=self.factory.topic_root, max_packet=self.factory.max_packet
            )
        self.buffer += data
        guard = self.guard
        try:
            for packet_type, flags, body, raw in split_packets(self.buffer, guard.max_packet):
                try:
                    guard.check(packet_type, flags, body)
                except MqttViolation as exc:
                    self._drop(_kind(exc), str(exc), guard.refusal(packet_type, exc))
                    return
                if packet_type == CONNECT:
                    self._connect_checked(raw)
                else:
                    self.resetTimeout()
                    self._forward(raw)
                if self.closed:
                    return
        except MqttViolation as exc:
            self._drop(_kind(exc), str(exc), guard.refusal(0, exc))

    def _connect_checked(self, raw: bytes) -> None:
        assert self.guard is not None
        # MQTT 3.1.2.10: no packet for 1.5 times the keep-alive means the client is gone.
        self.setTimeout(self.guard.keep_alive * 1.5 if self.guard.keep_alive else None)
        address = broker_address("front")
        self.pending.append(connect_with_credentials(raw, address.username, address.password))
        # The CONNECT and whatever follows it wait here until the VIN binding is confirmed.
        deferred = threads.deferToThreadPool(
            self.factory.reactor,
            self.factory.reactor.getThreadPool(),
            _certificate_speaks_for_in_thread,
            self.factory.certificate_binding,
            self.vin,
            self.cert_fingerprint,
        )
        deferred.addCallbacks(self._binding_answered, self._binding_failed)

    def _binding_answered(self, allowed: bool) -> None:
        if self.closed:
            return
        if not allowed:
            assert self.guard is not None
            self._drop(
                "not_authorized",
                "certificate is not the one bound to this VIN",
                self.guard.refusal(CONNECT),
            )
            return
        # connectTCP rather than an endpoint: an endpoint keeps a wrapping factory, a wrapping
        # protocol and a Deferred beside each broker connection for as long as it lasts.
        self.factory.reactor.connectTCP(
            self.factory.upstream_host, self.factory.upstream_port, _UpstreamFactory(self),
            timeout=10,
        )  # fmt: skip

    def _binding_failed(self, failure: Failure) -> None:
        logger.error("MQTT front could not check the certificate binding of %s: %s", self.vin,
                     failure.getErrorMessage())  # fmt: skip
        if not self.closed:
            assert self.guard is not None
            self._drop(
                "binding_unknown", "certificate binding unknown", self.guard.refusal(CONNECT)
            )

    def _upstream_failed(self, failure: Failure) -> None:
        logger.error("MQTT upstream %s:%s unreachable: %s", self.factory.upstream_host,
                     self.factory.upstream_port, failure.getErrorMessage())  # fmt: skip
        self._close()

    def upstream_ready(self, upstream: _UpstreamProtocol) -> None:
        if self.closed:
            upstream.transport.loseConnection()
            return
        self.upstream = upstream
        upstream.transport.write(b"".join(self.pending))
        self.pending.clear()
        self.pending_bytes = 0

    def _forward(self, raw: bytes) -> None:
        if self.upstream is not None:
            self.upstream.transport.write(raw)
            return
        self.pending_bytes += len(raw)
        if self.pending_bytes > self.factory.max_packet:
            assert self.guard is not None
            self._drop("oversized", "too much sent before the broker connection opened",
                       self.guard.refusal(PUBLISH))  # fmt: skip
            return
        self.pending.append(raw)

    def _drop(self, kind: str, reason: str, farewell: bytes) -> None:
        vin = self.guard.vin if self.guard else None
        logger.warning("MQTT front dropped vehicle %s from %s (%s): %s", vin, self.peer_ip, kind,
                       reason)  # fmt: skip
        self.factory.dropped[kind] += 1
        if farewell:
            self.transport.write(farewell)
        self._close()

    def _close(self) -> None:
        self.closed = True
        self.setTimeout(None)
        self.transport.loseConnection()
        # A peer that reads nothing would hold a TLS close open; this one is not waited for.
        if self._abort_call is None:
            self._abort_call = self.factory.reactor.callLater(5, self.transport.abortConnection)
        if self.upstream is not None:
            self.upstream.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self.closed = True
        self.setTimeout(None)
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


class MqttFrontFactory(protocol.Factory):
    """Builds one guarded pass-through per vehicle connection to the broker."""

    protocol = MqttFrontProtocol

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        certificate_binding: CertificateBinding,
        max_packet: int = DEFAULT_MAX_PACKET,
        topic_root: str | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.certificate_binding = certificate_binding
        self.max_packet = max_packet
        self.topic_root = topic_root or configured_topic_root()
        self.connect_timeout = float(connect_timeout or settings.OTA_MQTT_CONNECT_TIMEOUT_SECONDS)
        # Dropped connections by kind of reason ("not_authorized", "malformed", "timeout", ...).
        self.dropped: Counter[str] = Counter()
