"""HTTP byte ranges (RFC 9110 section 14) for resumable package downloads."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse

CHUNK_SIZE = 1024 * 1024
# RFC 9110 section 14.1.1: the unit is case-insensitive, the positions ASCII digits; only the
# whitespace around the whole value (OWS, stripped by any HTTP parser) is tolerated.
_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
# More digits than any file size has: read as "past the end" without converting thousands of
# digits (Python refuses integers of more than 4300 digits).
_MAX_POSITION_DIGITS = 18
_BEYOND_ANY_FILE = 10**_MAX_POSITION_DIGITS


def _position(text: str) -> int:
    digits = text.lstrip("0") or "0"
    return _BEYOND_ANY_FILE if len(digits) > _MAX_POSITION_DIGITS else int(digits)


class RangeNotSatisfiable(Exception):
    """The Range header asks for bytes outside the file (HTTP 416)."""


@dataclass(frozen=True)
class ByteRange:
    """Inclusive first and last byte positions."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range to serve, or None for the whole file.

    Multi-range and malformed headers are ignored (a 200 with the whole file is allowed by
    RFC 9110 and is what every vehicle client handles).
    """
    if not header:
        return None
    match = _RANGE_RE.fullmatch(header.strip(" \t"))
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:
        suffix = _position(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(size - suffix, 0), size - 1)
    first = _position(first_text)
    last = _position(last_text) if last_text else size - 1
    if last_text and last < first:
        return None  # syntactically invalid: ignore the header
    if first >= size:
        raise RangeNotSatisfiable
    return ByteRange(first, min(last, size - 1))


def if_range_allows(if_range: str | None, *, etag: str, last_modified: str) -> bool:
    """True when a Range may be honoured: no If-Range, or it names the current version."""
    if not if_range:
        return True
    value = if_range.strip()
    if value.startswith("W/"):
        return False  # weak validators never satisfy If-Range
    return value in (etag, last_modified)


def _iter_file(fh: IO[bytes], first: int, length: int) -> Iterator[bytes]:
    try:
        fh.seek(first)
        remaining = length
        while remaining > 0:
            chunk = fh.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


async def _aiter_file(fh: IO[bytes], first: int, length: int) -> AsyncIterator[bytes]:
    # Under ASGI Django would drain a synchronous iterator into one list (the whole package
    # in memory); reads go to worker threads so the event loop keeps serving other vehicles.
    read = sync_to_async(fh.read, thread_sensitive=False)
    try:
        await sync_to_async(fh.seek, thread_sensitive=False)(first)
        remaining = length
        while remaining > 0:
            chunk = await read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


def file_response(
    fh: IO[bytes],
    *,
    size: int,
    byte_range: ByteRange | None,
    content_type: str = "application/octet-stream",
    head: bool = False,
    asynchronous: bool = False,
) -> StreamingHttpResponse:
    """Stream the file (or one range of it) with Content-Length and Content-Range set."""
    if byte_range is None:
        first, length, status = 0, size, 200
    else:
        first, length, status = byte_range.first, byte_range.length, 206
    body: Iterator[bytes] | AsyncIterator[bytes]
    if head:
        fh.close()
        body = iter(())
    elif asynchronous:
        body = _aiter_file(fh, first, length)
    else:
        body = _iter_file(fh, first, length)
    response = StreamingHttpResponse(body, status=status, content_type=content_type)
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    if byte_range is not None:
        response["Content-Range"] = f"bytes {byte_range.first}-{byte_range.last}/{size}"
    return response
