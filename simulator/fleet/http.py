"""The fleet vehicle's HTTPS client: HTTP/1.1 keep-alive over the asyncio PQC-TLS stream.

The same protocol as the reference vehicle's `simulator.https.VehicleHttps`: JSON calls
retried with backoff while the server is unavailable, and resumable Range downloads (with
If-Range) held in memory, since fleet packages are small.
"""

from __future__ import annotations

import asyncio
import hashlib
import json as jsonlib
import random
from collections.abc import Awaitable, Callable
from typing import Any

from simulator.fleet.tls import TlsClosed, TlsStream
from simulator.https import RANGE_CHUNK, HttpsError, Response

# A server restarting, without its database, or busy: wait and try again.
UNAVAILABLE = (0, 429, 502, 503, 504)


class FleetHttps:
    """One kept-alive connection to the vehicle API, opened on demand by `connect()`."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[TlsStream]],
        *,
        server_hostname: str,
        retries: int = 8,
        backoff: float = 0.5,
        backoff_max: float = 15.0,
        timeout: float = 60.0,
    ) -> None:
        self._connect = connect
        self.server_hostname = server_hostname
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.timeout = timeout
        self._stream: TlsStream | None = None
        self._lock = asyncio.Lock()
        self.requests = 0
        self.resumes = 0

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()

    def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        cut_after: int | None = None,
    ) -> Response:
        """One request; a stale kept-alive connection is replaced once. No answer: HttpsError(0).

        `cut_after` drops the connection once that many body bytes have arrived, and returns
        what did arrive with status 0 (a simulated cut in the middle of a download).
        """
        body = jsonlib.dumps(json).encode() if json is not None else b""
        head = {"Host": self.server_hostname, "Accept": "application/json"}
        if json is not None:
            head["Content-Type"] = "application/json"
        if body or method in {"POST", "PUT", "PATCH"}:
            head["Content-Length"] = str(len(body))
        head.update(headers or {})
        raw = (
            (
                f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
            ).encode("iso-8859-1")
            + b"\r\n"
            + body
        )
        async with self._lock:
            for attempt in (1, 2):
                reused = self._stream is not None
                try:
                    if self._stream is None:
                        self._stream = await self._connect()
                    self.requests += 1
                    await self._stream.send(raw)
                    return await asyncio.wait_for(self._response(cut_after), self.timeout)
                except (TlsClosed, OSError, TimeoutError) as exc:
                    self._drop()
                    if not reused or attempt == 2:
                        raise HttpsError(0, f"{method} {path}: {exc}") from None
        raise AssertionError("unreachable")

    async def _response(self, cut_after: int | None) -> Response:
        assert self._stream is not None
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += await self._stream.recv()
        head, rest = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("iso-8859-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            # The vehicle API always sends a length; anything else ends with the connection.
            raise TlsClosed(f"HTTP {status} without Content-Length")
        length = int(headers["content-length"])
        while len(rest) < length:
            if cut_after is not None and len(rest) >= cut_after:
                self._drop()
                return Response(status=0, headers=headers, body=rest[:cut_after])
            rest += await self._stream.recv()
        if cut_after is not None and cut_after < length:
            self._drop()
            return Response(status=0, headers=headers, body=rest[:cut_after])
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status=status, headers=headers, body=rest[:length])

    async def send(self, method: str, path: str, *, json: Any = None) -> Response:
        """A request retried, bounded and with jittered backoff, while the server is unavailable."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                response = await self.request(method, path, json=json)
            except HttpsError:
                if attempt == self.retries:
                    raise
            else:
                if response.status not in UNAVAILABLE or attempt == self.retries:
                    return response
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isdigit():
                    delay = max(delay, min(float(retry_after), self.backoff_max))
            # Jitter, so a thousand vehicles refused together do not come back together.
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, self.backoff_max)
        raise AssertionError("unreachable")

    async def call(self, method: str, path: str, *, json: Any = None) -> Any:
        """A JSON request that must succeed (2xx); returns the decoded body."""
        response = await self.send(method, path, json=json)
        if not 200 <= response.status < 300:
            try:
                detail = response.json()
            except ValueError:
                detail = response.body[:200]
            raise HttpsError(response.status, f"{method} {path}: {detail}", detail)
        return response.json()

    async def download(
        self,
        path: str,
        *,
        size: int,
        sha256: str,
        have: bytearray,
        cut_at: int | None = None,
        chunk_size: int = RANGE_CHUNK,
    ) -> bytes:
        """Fetch `path` in Range requests into `have`, resuming from what it already holds.

        `cut_at` drops the connection once when the download passes that byte; the next
        request resumes from there, with If-Range so a rebuilt package restarts from zero.
        """
        etag = ""
        failures = 0
        while len(have) < size:
            offset = len(have)
            end = min(offset + chunk_size, size) - 1
            headers = {"Range": f"bytes={offset}-{end}"}
            if etag:
                headers["If-Range"] = etag
            cut = None
            if cut_at is not None and offset <= cut_at <= end:
                cut, cut_at = cut_at - offset, None
            try:
                response = await self.request("GET", path, headers=headers, cut_after=cut)
            except HttpsError:
                failures += 1
                if failures > self.retries:
                    raise
                await asyncio.sleep(min(self.backoff * 2**failures, self.backoff_max))
                continue
            if response.status == 0:  # cut mid-response: keep what arrived, resume
                have += response.body
                self.resumes += 1
                continue
            if response.status == 206:
                start = int(response.headers["content-range"].split()[1].split("-")[0])
                if start != offset:
                    raise HttpsError(206, f"asked for byte {offset}, got {start}")
                have += response.body
            elif response.status == 200:
                have[:] = response.body
            elif response.status in UNAVAILABLE and failures < self.retries:
                failures += 1
                await asyncio.sleep(min(self.backoff * 2**failures, self.backoff_max))
                continue
            else:
                raise HttpsError(response.status, f"GET {path}: {response.body[:200]!r}")
            etag = response.headers.get("etag", etag)
        data = bytes(have)
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            have.clear()
            raise HttpsError(0, f"{path}: downloaded bytes do not hash to the plan's sha256")
        return data
