"""The HTTP protocol of the vehicle and console listeners, with limits applied as bytes arrive.

Twisted's HTTP layer (under Daphne) spools a whole request body to a temporary file before
the application sees the request, keeps a connection alive for as long as a header line
trickles in every minute, and bounds neither. Here:

* the body limit of a request (core.request_limits.body_limit) is decided once its head is
  in: a declared Content-Length over it gets a 413 before a body byte is read (so nothing is
  spooled and a client waiting on `Expect: 100-continue` sends nothing), and a chunked body
  is cut with a 413 as soon as it passes it;
* a request head must be complete within a deadline that no trickle of bytes extends, counted
  from the connection (TLS handshake included) or, on a kept-alive connection, from the first
  byte of the next request;
* a connection idle between requests is closed after the idle timeout;
* the head is bounded in header count and bytes, with a JSON 431 or 400.

A refused connection reads no further request: what still arrives is discarded, up to a small
allowance, so the client can read the answer before the connection closes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from daphne.http_protocol import HTTPFactory, WebRequest
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol

from core.request_limits import BodyLimit, body_limit

logger = logging.getLogger(__name__)

# After a refusal: bytes still read and discarded, and the time allowed for the answer to
# leave, before the connection is dropped outright.
REFUSED_DISCARD_BYTES = 64 * 1024
REFUSED_GRACE_SECONDS = 2.0

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
}


@dataclass(frozen=True)
class EdgeLimits:
    """Per-connection bounds of one listener (settings OTA_HTTP_* and OTA_MAX_CONNECTIONS*)."""

    head_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_headers: int = 100
    max_head_bytes: int = 16 * 1024
    max_connections: int = 4096
    max_connections_per_ip: int = 256

    @classmethod
    def from_settings(cls) -> EdgeLimits:
        from django.conf import settings

        return cls(
            head_timeout=float(settings.OTA_HTTP_HEAD_TIMEOUT_SECONDS),
            idle_timeout=float(settings.OTA_HTTP_IDLE_TIMEOUT_SECONDS),
            max_headers=int(settings.OTA_HTTP_MAX_HEADERS),
            max_head_bytes=int(settings.OTA_HTTP_MAX_HEAD_BYTES),
            max_connections=int(settings.OTA_MAX_CONNECTIONS),
            max_connections_per_ip=int(settings.OTA_MAX_CONNECTIONS_PER_IP),
        )


@dataclass
class EdgeCounters:
    """What the edge refused, per listener (read by tests and logs)."""

    refused_connections: int = 0
    head_timeouts: int = 0
    oversized_bodies: int = 0
    bad_heads: int = 0


class EdgeRequest(WebRequest):
    """Daphne's request, counting body bytes against the limit decided from the head."""

    body_limit: BodyLimit | None = None
    body_received = 0

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802
        channel = self.channel
        if not isinstance(channel, EdgeHTTPChannel) or channel.refused:
            return
        self.body_received += len(data)
        if self.body_limit is not None and self.body_received > self.body_limit.max_bytes:
            channel.refuse_body(self.body_limit)
            return
        super().handleContentChunk(data)


class EdgeHTTPChannel(HTTPChannel):
    """Twisted's HTTP/1.1 channel with the limits of the listener it serves."""

    listener: str | None = None
    limits = EdgeLimits()
    counters = EdgeCounters()
    refused = False
    _awaiting_head = True
    _head_bytes_seen = False
    _head_timer: Any = None
    _drop_timer: Any = None
    _discarded = 0

    def connectionMade(self) -> None:  # noqa: N802
        edge = getattr(self.transport, "factory", None)
        self.listener = getattr(edge, "listener_name", None)
        self.limits = getattr(edge, "limits", None) or EdgeLimits.from_settings()
        self.counters = getattr(edge, "counters", None) or EdgeCounters()
        self.timeOut = self.limits.idle_timeout
        self.maxHeaders = self.limits.max_headers
        self.totalHeadersSize = self.limits.max_head_bytes
        self.MAX_LENGTH = self.limits.max_head_bytes
        # A refused or timed-out client gets this long to go before it is dropped.
        self.abortTimeout = REFUSED_GRACE_SECONDS
        super().connectionMade()
        # The first head's deadline covers the TLS handshake too.
        self._arm_head_timer()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.refused:
            self._discard(data)
            return
        if self._awaiting_head:
            self._head_bytes_seen = True
            if self._head_timer is None:
                self._arm_head_timer()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        if not self.refused:
            super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self.refused:
            super().rawDataReceived(data)

    def allHeadersReceived(self) -> None:  # noqa: N802
        self._cancel_head_timer()
        self._awaiting_head = False
        request = self.requests[-1]
        path = self._path.split(b"?", 1)[0]
        limit = body_limit(
            listener=self.listener,
            method=self._command.decode("ascii", "replace"),
            path=unquote(path.decode("ascii", "replace")),
            headers=_flat_headers(request),
        )
        if isinstance(request, EdgeRequest):
            request.body_limit = limit
        if self.length is not None and self.length > limit.max_bytes:
            # Before Twisted opens the file the body would be spooled to.
            self.refuse_body(limit)
            return
        super().allHeadersReceived()

    def allContentReceived(self) -> None:  # noqa: N802
        if not self.refused:
            super().allContentReceived()

    def requestDone(self, request: Any) -> None:  # noqa: N802
        # Set before Twisted replays pipelined bytes, which start the next head.
        self._awaiting_head = True
        self._head_bytes_seen = False
        super().requestDone(request)

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802
        self.counters.bad_heads += 1
        self._refuse(431, "header_too_large", f"a head line exceeds {self.MAX_LENGTH} bytes")

    def _respondToBadRequestAndDisconnect(self) -> None:  # noqa: N802
        self.counters.bad_heads += 1
        self._refuse(
            400,
            "bad_request",
            "malformed request head, or more than "
            f"{self.maxHeaders} headers or {self.totalHeadersSize} bytes",
        )

    def refuse_body(self, limit: BodyLimit) -> None:
        self.counters.oversized_bodies += 1
        logger.info("%s listener: refused a body over %d bytes", self.listener, limit.max_bytes)
        self._send_refusal(413, limit.refusal())

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        self._cancel_head_timer()
        if self._drop_timer is not None and self._drop_timer.active():
            self._drop_timer.cancel()
        self._drop_timer = None
        super().connectionLost(reason)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.callLater(self.limits.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None and self._head_timer.active():
            self._head_timer.cancel()
        self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self.counters.head_timeouts += 1
        logger.info(
            "%s listener: no complete request head within %.0f s; closing",
            self.listener,
            self.limits.head_timeout,
        )
        if not self._head_bytes_seen:
            # Nothing of a request arrived (the TLS handshake may not even be done): no one
            # to answer.
            self.refused = True
            self.transport.abortConnection()
            return
        self._refuse(
            408, "request_timeout", f"request head not complete within {self.limits.head_timeout} s"
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._send_refusal(status, {"error": {"code": code, "message": message, "fields": {}}})

    def _send_refusal(self, status: int, document: dict[str, Any]) -> None:
        if self.refused:
            return
        self.refused = True
        self._cancel_head_timer()
        self.setTimeout(None)
        body = json.dumps(document).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        self.transport.write(head + body)
        self._drop_timer = self.callLater(REFUSED_GRACE_SECONDS, self._drop)
        self.loseConnection()

    def _discard(self, data: bytes) -> None:
        self._discarded += len(data)
        if self._discarded > REFUSED_DISCARD_BYTES:
            self._drop()

    def _drop(self) -> None:
        self._drop_timer = None
        if self.transport is not None:
            self.transport.abortConnection()


def _flat_headers(request: Any) -> list[tuple[bytes, bytes]]:
    return [
        (name, value)
        for name, values in request.requestHeaders.getAllRawHeaders()
        for value in values
    ]


class EdgeHTTPFactory(HTTPFactory):
    """Daphne's HTTP factory, building the channels and requests above."""

    def protocol(self) -> _GenericHTTPChannelProtocol:
        return _GenericHTTPChannelProtocol(EdgeHTTPChannel())

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = EdgeRequest
        return protocol
