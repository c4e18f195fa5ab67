"""The vehicle's HTTP/1.1 client: response framing, cuts, and resumable Range downloads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from simulator.https import ConnectionCut, HttpsError, Response, VehicleHttps


class FakeConnection:
    """Plaintext arriving in the pieces a TLS connection might hand over."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)

    def recv(self, size: int = 65536) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


def _client() -> VehicleHttps:
    return VehicleHttps(host="127.0.0.1", port=8443, config=None, credentials=None)  # type: ignore[arg-type]


def test_content_length_body_split_over_reads() -> None:
    conn = FakeConnection(b"HTTP/1.1 200 OK\r\nContent-Len", b"gth: 5\r\n\r\nhe", b"llo")
    response = _client()._read_response(conn, cut_after=None)  # type: ignore[arg-type]
    assert (response.status, response.body) == (200, b"hello")


def test_chunked_body_is_decoded() -> None:
    conn = FakeConnection(
        b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki",
        b"\r\n5\r\npedia\r\n0\r\n\r\n",
    )
    response = _client()._read_response(conn, cut_after=None)  # type: ignore[arg-type]
    assert response.body == b"wikipedia"


def test_a_cut_hands_over_exactly_the_bytes_received() -> None:
    conn = FakeConnection(
        b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n0123", b"456789"
    )
    with pytest.raises(ConnectionCut) as cut:
        _client()._read_response(conn, cut_after=6)  # type: ignore[arg-type]
    assert cut.value.args[0] == b"012345"


class FakeServer(VehicleHttps):
    """Serves `data` by Range with its hash as ETag, honouring If-Range."""

    def __init__(self, data: bytes) -> None:
        super().__init__(host="localhost", port=8443, config=None, credentials=None)  # type: ignore[arg-type]
        self.data = data
        self.seen: list[dict[str, str]] = []

    def request(self, method, path, *, json=None, headers=None, cut_after=None) -> Response:
        headers = headers or {}
        self.seen.append(headers)
        etag = '"' + hashlib.sha256(self.data).hexdigest() + '"'
        first, last = (int(x) for x in headers["Range"].removeprefix("bytes=").split("-"))
        if headers.get("If-Range", etag) != etag:
            return Response(200, {"etag": etag}, self.data)
        body = self.data[first : last + 1]
        if cut_after is not None:
            raise ConnectionCut(body[:cut_after])
        content_range = f"bytes {first}-{first + len(body) - 1}/{len(self.data)}"
        return Response(206, {"etag": etag, "content-range": content_range}, body)


def test_download_resumes_from_a_partial_file_with_if_range(tmp_path: Path) -> None:
    data = bytes(range(256)) * 20
    server = FakeServer(data)
    dest = tmp_path / "zone.otap"
    sha = hashlib.sha256(data).hexdigest()
    server.download("/p", dest, size=len(data), sha256=sha, chunk_size=1000, cut_at=2500)
    assert dest.read_bytes() == data
    assert server.stats.resumes == 1
    # After the cut the next range starts where the received bytes ended, guarded by If-Range.
    ranges = [h["Range"] for h in server.seen]
    assert ranges[:4] == ["bytes=0-999", "bytes=1000-1999", "bytes=2000-2999", "bytes=2500-3499"]
    assert all("If-Range" in h for h in server.seen[1:])


def test_a_package_changed_since_the_partial_download_starts_over(tmp_path: Path) -> None:
    old, new = b"a" * 3000, b"b" * 3000
    dest = tmp_path / "zone.otap"
    server = FakeServer(new)
    # A first attempt left half of the old file and its ETag behind.
    (tmp_path / "zone.otap.part").write_bytes(old[:1500])
    (tmp_path / "zone.otap.etag").write_text('"' + hashlib.sha256(old).hexdigest() + '"')
    server.download(
        "/p", dest, size=len(new), sha256=hashlib.sha256(new).hexdigest(), chunk_size=1000
    )
    assert dest.read_bytes() == new
    # It asked for the rest of the old file; the server answered with the whole new one.
    assert [h["Range"] for h in server.seen] == ["bytes=1500-2499"]


def test_bytes_that_do_not_hash_to_the_plan_are_refused_and_discarded(tmp_path: Path) -> None:
    server = FakeServer(b"x" * 100)
    dest = tmp_path / "zone.otap"
    with pytest.raises(HttpsError, match="sha256"):
        server.download("/p", dest, size=100, sha256="0" * 64)
    assert not dest.exists()
    assert not (tmp_path / "zone.otap.part").exists()
