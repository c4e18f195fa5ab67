"""A small MQTT 3.1.1 client over the fleet's asyncio PQC-TLS stream.

paho-mqtt wants a real socket it reads itself (and its blocking loop wants a thread per
client); the fleet's vehicles speak TLS through pyOpenSSL memory BIOs on one event loop, so
they need a client that only encodes and decodes packets. This one covers what a vehicle
uses (docs/PROTOCOL.md): CONNECT with a persistent session and a retained last will,
SUBSCRIBE, PUBLISH at QoS 1 both ways with PUBACK, PINGREQ, DISCONNECT.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable

from simulator.fleet.tls import TlsClosed, TlsStream

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14


class MqttError(ConnectionError):
    """The broker refused the session or the connection ended."""


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _remaining_length(len(body)) + body


def connect_packet(
    client_id: str, *, keepalive: int, will_topic: str, will_payload: bytes, clean: bool
) -> bytes:
    # Will flag, will QoS 1, will retain; clean session only when asked.
    flags = 0x04 | 0x08 | 0x20 | (0x02 if clean else 0)
    body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body += _string(client_id) + _string(will_topic) + _string(will_payload)
    return packet(CONNECT, 0, body)


def publish_packet(
    topic: str, payload: bytes, *, packet_id: int, retain: bool = False, dup: bool = False
) -> bytes:
    flags = (0x08 if dup else 0) | 0x02 | (0x01 if retain else 0)  # QoS 1
    return packet(PUBLISH, flags, _string(topic) + struct.pack("!H", packet_id) + payload)


def split_packets(buffer: bytearray) -> list[tuple[int, int, bytes]]:
    """Complete packets (type, flags, body) taken off the front of `buffer`."""
    packets = []
    while len(buffer) >= 2:
        length, multiplier, index = 0, 1, 1
        while True:
            if index >= len(buffer):
                return packets
            byte = buffer[index]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            index += 1
            if not byte & 0x80:
                break
            if index > 4:
                raise MqttError("malformed remaining length")
        if len(buffer) < index + length:
            return packets
        packets.append((buffer[0] >> 4, buffer[0] & 0x0F, bytes(buffer[index : index + length])))
        del buffer[: index + length]
    return packets


class MqttSession:
    """One vehicle's MQTT session. `on_message(topic, payload)` runs on the event loop."""

    def __init__(
        self, stream: TlsStream, client_id: str, on_message: Callable[[str, bytes], None]
    ) -> None:
        self.stream = stream
        self.client_id = client_id
        self.on_message = on_message
        self._next_id = 0
        self._acks: dict[int, asyncio.Future] = {}
        self._buffer = bytearray()
        self._early: list[tuple[int, int, bytes]] = []
        self._closed = False

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    async def connect(
        self, *, keepalive: int, will_topic: str, will_payload: bytes, clean: bool = False
    ) -> bool:
        """Open the session; returns whether the broker kept one from before."""
        await self.stream.send(
            connect_packet(
                self.client_id,
                keepalive=keepalive,
                will_topic=will_topic,
                will_payload=will_payload,
                clean=clean,
            )
        )
        kind, _, body = await self._next_packet()
        if kind != CONNACK or len(body) != 2:
            raise MqttError(f"expected CONNACK, got packet type {kind}")
        if body[1] != 0:
            raise MqttError(f"connection refused, return code {body[1]}")
        return bool(body[0] & 1)

    async def _next_packet(self) -> tuple[int, int, bytes]:
        while True:
            packets = split_packets(self._buffer)
            if packets:
                # Messages a kept session delivers right after the CONNACK wait for `run`.
                self._early.extend(packets[1:])
                return packets[0]
            self._buffer += await self.stream.recv()

    async def subscribe(self, topics: list[str], *, timeout: float = 30.0) -> None:
        packet_id = self._packet_id()
        body = struct.pack("!H", packet_id) + b"".join(_string(t) + b"\x01" for t in topics)
        await self._send_and_wait(packet(SUBSCRIBE, 0x02, body), packet_id, timeout)

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 30.0
    ) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        packet_id = self._packet_id()
        data = publish_packet(topic, payload, packet_id=packet_id, retain=retain)
        await self._send_and_wait(data, packet_id, timeout)

    async def _send_and_wait(self, data: bytes, packet_id: int, timeout: float) -> None:
        if self._closed:
            raise MqttError("session closed")
        future = asyncio.get_running_loop().create_future()
        self._acks[packet_id] = future
        try:
            await self.stream.send(data)
            await asyncio.wait_for(future, timeout)
        except TlsClosed as exc:
            raise MqttError(str(exc)) from None
        except TimeoutError:
            raise MqttError(f"no acknowledgement of packet {packet_id} in {timeout} s") from None
        finally:
            self._acks.pop(packet_id, None)

    async def ping(self) -> None:
        await self.stream.send(packet(PINGREQ, 0, b""))

    async def disconnect(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(TlsClosed):
                await self.stream.send(packet(DISCONNECT, 0, b""))

    async def run(self) -> None:
        """Read and dispatch until the connection ends (then raise MqttError)."""
        try:
            for kind, flags, body in self._early:
                await self._dispatch(kind, flags, body)
            self._early.clear()
            while True:
                for kind, flags, body in split_packets(self._buffer):
                    await self._dispatch(kind, flags, body)
                self._buffer += await self.stream.recv()
        except TlsClosed as exc:
            raise MqttError(str(exc)) from None
        finally:
            self._closed = True
            for future in self._acks.values():
                if not future.done():
                    future.set_exception(MqttError("connection closed"))

    async def _dispatch(self, kind: int, flags: int, body: bytes) -> None:
        if kind == PUBLISH:
            (length,) = struct.unpack_from("!H", body)
            topic = body[2 : 2 + length].decode()
            offset = 2 + length
            qos = (flags >> 1) & 0x03
            if qos:
                packet_id = body[offset : offset + 2]
                offset += 2
                await self.stream.send(packet(PUBACK, 0, packet_id))
            self.on_message(topic, body[offset:])
        elif kind in (PUBACK, SUBACK):
            (packet_id,) = struct.unpack_from("!H", body)
            future = self._acks.get(packet_id)
            if future is not None and not future.done():
                if kind == SUBACK and 0x80 in body[2:]:
                    future.set_exception(MqttError("subscription refused"))
                else:
                    future.set_result(None)
        elif kind != PINGRESP:
            raise MqttError(f"unexpected packet type {kind} from the broker")
