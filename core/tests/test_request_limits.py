from __future__ import annotations

import asyncio
import json

from core.request_limits import RequestBodyLimit


def _run(app, scope, messages):
    sent: list[dict] = []
    incoming = list(messages)

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(RequestBodyLimit(app)(scope, receive, send))
    return sent


def _scope(content_length: int | None = None, *, credentials: bool = True) -> dict:
    headers = [(b"content-type", b"multipart/form-data; boundary=x")]
    if credentials:
        headers.append((b"authorization", b"Token abc"))
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    return {"type": "http", "method": "POST", "path": "/api/v1/firmware/upload", "headers": headers}


def test_declared_oversize_is_refused_before_the_app_reads_anything(settings) -> None:
    settings.FIRMWARE_MAX_UPLOAD_BYTES = 1000
    called = []

    async def app(scope, receive, send):
        called.append(scope)

    sent = _run(app, _scope(content_length=5_000_000), [])
    assert called == []
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["fields"]["file"]


def test_chunked_body_growing_past_the_limit_reads_as_a_disconnect(settings) -> None:
    settings.FIRMWARE_MAX_UPLOAD_BYTES = 10
    seen: list[str] = []
    chunk = {"type": "http.request", "body": b"x" * 600_000, "more_body": True}

    async def app(scope, receive, send):
        for _ in range(3):
            seen.append((await receive())["type"])

    _run(app, _scope(), [chunk, chunk, chunk])
    assert seen == ["http.request", "http.disconnect", "http.disconnect"]


def test_bodies_within_the_limit_pass_untouched(settings) -> None:
    settings.FIRMWARE_MAX_UPLOAD_BYTES = 10_000
    bodies: list[bytes] = []

    async def app(scope, receive, send):
        bodies.append((await receive())["body"])

    _run(app, _scope(content_length=5), [{"type": "http.request", "body": b"hello"}])
    assert bodies == [b"hello"]


def test_anonymous_upload_gets_the_small_limit(settings) -> None:
    settings.OTA_ANONYMOUS_MAX_BODY_BYTES = 100
    called = []

    async def app(scope, receive, send):
        called.append(scope)

    sent = _run(app, _scope(content_length=101, credentials=False), [])
    assert called == []
    assert sent[0]["status"] == 413
    assert "OTA_ANONYMOUS_MAX_BODY_BYTES" in json.loads(sent[1]["body"])["error"]["message"]


def test_limit_follows_listener_route_and_credentials(settings) -> None:
    from core.request_limits import body_limit

    settings.FIRMWARE_MAX_UPLOAD_BYTES = 10**9
    upload = "/api/v1/firmware/upload"
    session = [(b"cookie", f"a=1; {settings.SESSION_COOKIE_NAME}=x".encode())]
    assert (
        body_limit(listener="console", method="POST", path=upload, headers=session).field == "file"
    )
    assert body_limit(listener="console", method="POST", path=upload, headers=[]).setting == (
        "OTA_ANONYMOUS_MAX_BODY_BYTES"
    )
    assert body_limit(
        listener="console", method="POST", path="/healthz", headers=session
    ).setting == ("OTA_MAX_BODY_BYTES")
    assert body_limit(listener="vehicle", method="POST", path=upload, headers=session).setting == (
        "OTA_MAX_BODY_BYTES"
    )
    not_a_session = [(b"cookie", b"xsessionid=1")]
    assert body_limit(
        listener="console", method="POST", path=upload, headers=not_a_session
    ).setting == ("OTA_ANONYMOUS_MAX_BODY_BYTES")
