"""How large a request body may be, decided from the request head alone.

The PQC-TLS listeners apply `body_limit()` while the bytes arrive (pqc/http_edge.py), before
anything is spooled; `RequestBodyLimit` applies the same rule to the ASGI application for any
other server that runs it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.urls import reverse

# Multipart framing and form fields around the largest allowed firmware file.
MULTIPART_ALLOWANCE = 1024 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class BodyLimit:
    """The most body bytes one request may send, and the setting that says so."""

    max_bytes: int
    setting: str
    # The input the 413 names: the uploaded file, or the request body as a whole.
    field: str = "body"

    def refusal(self) -> dict[str, Any]:
        """The JSON error body of a 413 for this limit."""
        return {
            "error": {
                "code": "request_too_large",
                "message": f"request body exceeds {self.max_bytes} bytes ({self.setting})",
                "fields": {self.field: [f"at most {self.max_bytes} bytes"]},
            }
        }


@cache
def _firmware_upload_path() -> str:
    return reverse("firmware-api:firmware-upload", urlconf=settings.ROOT_URLCONF)


def presents_credentials(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the head carries a session cookie or an Authorization header.

    Only a claim: the application still authenticates it. It is all that can be known before
    the body arrives, and enough to keep anonymous clients to the small limit.
    """
    session_cookie = settings.SESSION_COOKIE_NAME.encode() + b"="
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization" and value.strip():
            return True
        if lowered == b"cookie" and any(
            part.strip().startswith(session_cookie) for part in value.split(b";")
        ):
            return True
    return False


def body_limit(
    *, listener: str | None, method: str, path: str, headers: Iterable[tuple[bytes, bytes]]
) -> BodyLimit:
    """The body limit of one request.

    * vehicle listener (every client proved a fleet certificate): OTA_MAX_BODY_BYTES;
    * a firmware upload presenting credentials: FIRMWARE_MAX_UPLOAD_BYTES plus framing;
    * any other request presenting credentials: OTA_MAX_BODY_BYTES;
    * anonymous requests: OTA_ANONYMOUS_MAX_BODY_BYTES.

    `path` is the decoded path, as the application will route it.
    """
    if listener == "vehicle":
        return BodyLimit(settings.OTA_MAX_BODY_BYTES, "OTA_MAX_BODY_BYTES")
    if not presents_credentials(headers):
        return BodyLimit(settings.OTA_ANONYMOUS_MAX_BODY_BYTES, "OTA_ANONYMOUS_MAX_BODY_BYTES")
    if method.upper() == "POST" and path == _firmware_upload_path():
        return BodyLimit(
            settings.FIRMWARE_MAX_UPLOAD_BYTES + MULTIPART_ALLOWANCE,
            "FIRMWARE_MAX_UPLOAD_BYTES",
            field="file",
        )
    return BodyLimit(settings.OTA_MAX_BODY_BYTES, "OTA_MAX_BODY_BYTES")


class RequestBodyLimit:
    """ASGI middleware: 413 for a declared Content-Length over the limit, and a cut connection
    for a chunked body that grows past it, so no request can fill the disk or memory."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(
            listener=scope.get("ota_listener"),
            method=scope.get("method", "GET"),
            path=scope.get("path", "/"),
            headers=scope.get("headers", []),
        )
        declared = _content_length(scope)
        if declared is not None and declared > limit.max_bytes:
            await _refuse(send, limit)
            return
        received = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    # Django reads the whole body before the view runs; a disconnect makes it
                    # stop and drop what it spooled.
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: BodyLimit) -> None:
    body = json.dumps(limit.refusal()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
