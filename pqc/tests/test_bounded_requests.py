"""At most OTA_REQUEST_CONCURRENCY requests run Django at once; the rest wait without a thread."""

from __future__ import annotations

import asyncio

import pytest

from pqc.server import BoundedRequests


def test_requests_beyond_the_limit_wait_and_a_started_response_frees_its_slot() -> None:
    running = 0
    most = 0
    finish_body = asyncio.Event()

    async def app(scope, receive, send) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)  # the view's database work
        running -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await finish_body.wait()  # a long download after the view is done
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def main() -> list[str]:
        bounded = BoundedRequests(app, limit=2)
        sent: list[str] = []

        async def send(message) -> None:
            sent.append(message["type"])

        requests = [asyncio.create_task(bounded({"type": "http"}, None, send)) for _ in range(6)]
        # Every view runs although all six responses are still streaming.
        for _ in range(100):
            if sent.count("http.response.start") == 6:
                break
            await asyncio.sleep(0.01)
        finish_body.set()
        await asyncio.gather(*requests)
        return sent

    sent = asyncio.run(main())
    assert most == 2
    assert sent.count("http.response.start") == 6 and sent.count("http.response.body") == 6


def test_a_request_that_fails_gives_its_slot_back() -> None:
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("view failed")

    async def main() -> int:
        bounded = BoundedRequests(broken, limit=1)
        for _ in range(3):
            with pytest.raises(RuntimeError, match="view failed"):
                await bounded({"type": "http"}, None, None)
        assert bounded._slots is not None
        return bounded._slots._value

    assert asyncio.run(main()) == 1
