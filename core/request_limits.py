"""Refuse oversized request bodies before Django spools them to disk."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

# Multipart framing and form fields around the largest allowed firmware file.
_MULTIPART_ALLOWANCE = 1024 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def max_request_bytes() -> int:
    return settings.FIRMWARE_MAX_UPLOAD_BYTES + _MULTIPART_ALLOWANCE


class RequestBodyLimit:
    """ASGI middleware: 413 for a declared Content-Length over the limit, and a cut connection
    for a chunked body that grows past it, so no request can fill the disk or memory."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = max_request_bytes()
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        received = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
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


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "request_too_large",
                "message": f"request body exceeds {limit} bytes",
                "fields": {"file": [f"at most {settings.FIRMWARE_MAX_UPLOAD_BYTES} bytes"]},
            }
        }
    ).encode()
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
