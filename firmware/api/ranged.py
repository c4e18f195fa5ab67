"""Serving a stored file over the API: whole, or the one byte range asked for, streamed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import IO

from django.db.models.fields.files import FieldFile
from django.http import HttpResponseBase
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import DomainError
from firmware.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    file_response,
    if_range_allows,
    parse_range,
)

# Django's ASGI handler sends a streamed body in messages of this size and slices (copies)
# any larger piece; pieces of exactly this size pass through uncopied.
_PIECE = 64 * 1024
# Pieces read per worker-thread hop: one hop per MiB instead of one per piece.
_PIECES_PER_READ = 16


def _read_pieces(fh: IO[bytes], remaining: int) -> list[bytes]:
    pieces = []
    for _ in range(_PIECES_PER_READ):
        if remaining <= 0:
            break
        piece = fh.read(min(_PIECE, remaining))
        if not piece:
            break
        remaining -= len(piece)
        pieces.append(piece)
    return pieces


async def read_ahead(fh: IO[bytes], first: int, length: int) -> AsyncIterator[bytes]:
    """Stream `length` bytes from `first`, reading the next MiB while this one is sent.

    Reads run in a worker thread so the event loop keeps serving other vehicles; at most two
    reads (2 MiB) are held per download, and the listener's flow control stops this iterator
    while the vehicle is not reading.
    """
    loop = asyncio.get_running_loop()
    nxt: asyncio.Future[list[bytes]] | None = None
    try:
        await loop.run_in_executor(None, fh.seek, first)
        remaining = length
        nxt = loop.run_in_executor(None, _read_pieces, fh, remaining)
        while True:
            pieces = await nxt
            remaining -= sum(len(piece) for piece in pieces)
            if not pieces:
                break
            nxt = loop.run_in_executor(None, _read_pieces, fh, remaining)
            for piece in pieces:
                yield piece
    finally:
        if nxt is None or nxt.done():
            fh.close()
        else:
            # The client went away while a read runs in its thread: close after it.
            nxt.add_done_callback(lambda done: _close_after(done, fh))


def _close_after(done: asyncio.Future[list[bytes]], fh: IO[bytes]) -> None:
    if not done.cancelled():
        done.exception()  # retrieved, so a failed read is not reported as unhandled
    fh.close()


def serve_ranged(
    request: Request,
    open_file: Callable[[], IO[bytes]],
    *,
    size: int,
    etag: str,
    last_modified: str,
    head: bool,
) -> tuple[HttpResponseBase, ByteRange | None]:
    """The file, or the one range the request asks for (206), streamed; 416 past the end.

    The file is opened only once the range is known to be satisfiable.
    """
    honour = if_range_allows(
        request.headers.get("If-Range"), etag=etag, last_modified=last_modified
    )
    try:
        byte_range = parse_range(request.headers.get("Range"), size) if honour else None
    except RangeNotSatisfiable:
        response = Response(
            {
                "error": {
                    "code": "range_not_satisfiable",
                    "message": "range is past the end",
                    "fields": {"Range": [f"file is {size} bytes"]},
                }
            },
            status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
        )
        response["Content-Range"] = f"bytes */{size}"
        return response, None
    fh = open_file()
    response = file_response(fh, size=size, byte_range=byte_range, head=head)
    if hasattr(request._request, "scope") and not head:
        # Served by the ASGI listener: an async iterator, or Django would drain the whole
        # file into memory first.
        first, length = (byte_range.first, byte_range.length) if byte_range else (0, size)
        response.streaming_content = read_ahead(fh, first, length)
    response["ETag"] = etag
    response["Last-Modified"] = last_modified
    response["Cache-Control"] = "private, no-transform"
    return response, byte_range


def stored_file_opener(stored: FieldFile, what: str) -> Callable[[], IO[bytes]]:
    """Opens `stored` for serve_ranged; a file gone from storage is a 503 naming `what`."""

    def open_stored() -> IO[bytes]:
        try:
            return stored.storage.open(stored.name, "rb")
        except OSError:
            raise DomainError(f"{what} file is missing from storage", code="unavailable") from None

    return open_stored
