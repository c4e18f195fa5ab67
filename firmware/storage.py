"""Streaming helpers around Django's storage API (local files or an S3-compatible store)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from django.core.files import File
from django.core.files.storage import Storage, default_storage

CHUNK_SIZE = 1 << 20


class TooLargeError(Exception):
    """The stream passed the size limit while being stored."""


class HashingFile(File):
    """A File whose chunks() hashes, counts and enforces a size limit as storage reads it.

    It deliberately has no temporary_file_path(): FileSystemStorage would then move the file
    without reading it, and the hash would never be computed.
    """

    def __init__(self, source: IO[bytes], *, limit: int) -> None:
        super().__init__(source)
        self.limit = limit
        self.digest = hashlib.sha256()
        self.count = 0

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(chunk_size or CHUNK_SIZE):
            self.count += len(chunk)
            if self.count > self.limit:
                raise TooLargeError(f"larger than {self.limit} bytes")
            self.digest.update(chunk)
            yield chunk

    @property
    def size(self) -> int:  # storage backends may ask before reading
        return self.count


class MovableFile(File):
    """A finished local temp file; FileSystemStorage moves it instead of copying gigabytes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path.open("rb"), name=path.name)
        self._path = path

    def temporary_file_path(self) -> str:
        return str(self._path)


def save_streaming(
    name: str, source: IO[bytes], *, limit: int, storage: Storage | None = None
) -> tuple[str, str, int]:
    """Store source under name, hashing while it streams; returns (stored name, sha256, size)."""
    storage = storage or default_storage
    wrapped = HashingFile(source, limit=limit)
    stored = None
    try:
        stored = storage.save(name, wrapped)
    except TooLargeError:
        # FileSystemStorage leaves the partial file behind; nothing of a refused upload stays.
        _delete_quietly(storage, name)
        raise
    return stored, wrapped.digest.hexdigest(), wrapped.count


def save_local_file(name: str, path: Path, *, storage: Storage | None = None) -> str:
    """Store a finished local file (moved when storage is local) and return the stored name."""
    storage = storage or default_storage
    movable = MovableFile(path)
    try:
        return storage.save(name, movable)
    finally:
        movable.close()


def _delete_quietly(storage: Storage, name: str) -> None:
    with suppress(OSError):
        storage.delete(name)


@contextmanager
def local_path(name: str, *, storage: Storage | None = None) -> Iterator[Path]:
    """A local filesystem path for a stored file, copying it to a temp file for remote stores."""
    storage = storage or default_storage
    try:
        yield Path(storage.path(name))
        return
    except NotImplementedError:
        pass
    fd, tmp = tempfile.mkstemp(prefix="otap-src-")
    try:
        with os.fdopen(fd, "wb") as out, storage.open(name, "rb") as src:
            shutil.copyfileobj(src, out, CHUNK_SIZE)
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)
