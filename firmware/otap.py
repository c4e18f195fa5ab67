"""OTAP zone package format: streaming writer, parser, verifier and extractor.

The byte layout is specified in docs/PACKAGE_FORMAT.md; the constants below are the single
source of truth for it. This module needs no Django so that vehicle-side developers can run
``python -m firmware.otap verify PACKAGE --trust KEYS``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import queue
import re
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import zstandard

from firmware.deltas import (
    DeltaAlgorithm,
    DeltaError,
    apply_delta,
    make_delta,
)

MAGIC = b"OTAP"
FORMAT_VERSION = 1

HEADER = struct.Struct(">4sHHHHI32s16s")
ENTRY = struct.Struct(">16s64s64s64sBB6sQQQ32s32s32s16s")
MANIFEST = struct.Struct(">QqqQQ16s16s56s")
SIGNATURES = struct.Struct(">H3309sH72s7s")

HEADER_SIZE = HEADER.size  # 64
ENTRY_SIZE = ENTRY.size  # 352
MANIFEST_SIZE = MANIFEST.size  # 128
SIGNATURE_BLOCK_SIZE = SIGNATURES.size  # 3392
MLDSA65_SIGNATURE_SIZE = 3309
ECDSA_MAX_SIGNATURE_SIZE = 72

MAX_ECU_COUNT = 128
# A sanity bound, not a policy: no ECU image comes near 64 GiB, and the bound keeps every
# offset arithmetic result far from u64 overflow.
MAX_IMAGE_SIZE = 1 << 36
# FIPS 204 context string: a signature made for OTAP manifests is useless in any other protocol.
MLDSA_CONTEXT = b"OTAP/1 manifest"

COMPRESSION_NONE = 0
COMPRESSION_ZSTD = 1
COMPRESSION_NAMES = {COMPRESSION_NONE: "none", COMPRESSION_ZSTD: "zstd"}

CHUNK_SIZE = 1 << 20
ECU_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
GATEWAY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
VERSION_RE = re.compile(r"^[0-9A-Za-z.+-]{0,64}$")


class OtapError(Exception):
    """Any reason a package cannot be built, parsed, verified or extracted."""


class Signer(Protocol):
    """Signs a manifest with both halves of a hybrid signing key."""

    mldsa_key_id: bytes
    ecdsa_key_id: bytes

    def sign_manifest(self, message: bytes, *, context: bytes) -> tuple[bytes, bytes]: ...


class TrustSet(Protocol):
    """Public keys a verifier accepts, looked up by key id."""

    def verify_manifest(
        self,
        message: bytes,
        *,
        context: bytes,
        mldsa_key_id: bytes,
        mldsa_signature: bytes,
        ecdsa_key_id: bytes,
        ecdsa_signature: bytes,
    ) -> None: ...


@dataclass(frozen=True)
class EntrySource:
    """One ECU image to put in a package; base_path is the vehicle's current image if known."""

    ecu_id: str
    target_version: str
    image_path: Path
    current_version: str = ""
    base_path: Path | None = None


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of the writer; the defaults match the server settings' defaults."""

    level: int = 3
    threads: int = 0
    delta_algorithm: DeltaAlgorithm = DeltaAlgorithm.ZSTD_PATCH_FROM
    # Deltas are built once per zone content and served to a whole fleet: spend CPU on size.
    delta_level: int = 19
    delta_max_bytes: int = 256 << 20


@dataclass(frozen=True)
class Entry:
    """Metadata of one firmware image inside a package, as stored in the entry table."""

    ecu_id: str
    current_version: str
    target_version: str
    delta_base_version: str
    compression: int
    delta_algorithm: DeltaAlgorithm
    data_offset: int
    stored_size: int
    image_size: int
    image_sha256: bytes
    data_sha256: bytes
    base_sha256: bytes

    @property
    def is_delta(self) -> bool:
        return self.delta_algorithm != DeltaAlgorithm.NONE


@dataclass(frozen=True)
class Package:
    """A parsed package: everything except the data bytes themselves."""

    zonal_gateway_id: str
    entries: tuple[Entry, ...]
    package_version: int
    created_at: dt.datetime
    expires_at: dt.datetime
    total_size: int
    data_offset: int
    mldsa_key_id: bytes
    ecdsa_key_id: bytes
    mldsa_signature: bytes
    ecdsa_signature: bytes
    signed_bytes: bytes = field(repr=False)


@dataclass(frozen=True)
class BuildResult:
    """What the writer produced: the parsed view plus the whole-file hash."""

    package: Package
    sha256: str
    size: int


# ---------------------------------------------------------------------------------------------
# Field encoding


def _pack_text(value: str, size: int, name: str, pattern: re.Pattern[str]) -> bytes:
    if not pattern.match(value):
        raise OtapError(f"{name} {value!r} is not allowed (pattern {pattern.pattern})")
    return value.encode("ascii").ljust(size, b"\0")


def _unpack_text(raw: bytes, name: str, pattern: re.Pattern[str]) -> str:
    text, _, padding = raw.partition(b"\0")
    if padding.strip(b"\0"):
        raise OtapError(f"{name}: bytes after the NUL terminator must be zero")
    try:
        value = text.decode("ascii")
    except UnicodeDecodeError:
        raise OtapError(f"{name}: not ASCII") from None
    if not pattern.match(value):
        raise OtapError(f"{name} {value!r} is not allowed")
    return value


def data_offset_for(ecu_count: int) -> int:
    """Offset of the first data byte for a package of ecu_count entries."""
    return signed_size_for(ecu_count) + SIGNATURE_BLOCK_SIZE


def signed_size_for(ecu_count: int) -> int:
    """Length of the signed region (header, entry table, manifest)."""
    return HEADER_SIZE + ENTRY_SIZE * ecu_count + MANIFEST_SIZE


def _pack_entry(entry: Entry) -> bytes:
    return ENTRY.pack(
        _pack_text(entry.ecu_id, 16, "ecu_id", ECU_ID_RE),
        _pack_text(entry.current_version, 64, "current_version", VERSION_RE),
        _pack_text(entry.target_version, 64, "target_version", VERSION_RE),
        _pack_text(entry.delta_base_version, 64, "delta_base_version", VERSION_RE),
        entry.compression,
        int(entry.delta_algorithm),
        b"\0" * 6,
        entry.data_offset,
        entry.stored_size,
        entry.image_size,
        entry.image_sha256,
        entry.data_sha256,
        entry.base_sha256,
        b"\0" * 16,
    )


def _to_epoch(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise OtapError("timestamps must be timezone-aware")
    return int(moment.timestamp())


def _from_epoch(seconds: int, name: str) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise OtapError(f"{name} {seconds} is out of range") from None


# ---------------------------------------------------------------------------------------------
# Writer


class _BackgroundHasher:
    """Hashes chunks on a helper thread while the caller compresses the next chunk.

    hashlib and zstd both release the GIL on large buffers, so the two overlap on separate
    cores; the bounded queue keeps memory at a few chunks however large the image is.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[hashlib._Hash, bytes] | None] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, name="otap-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            job[0].update(job[1])

    def update(self, digest: hashlib._Hash, data: bytes) -> None:
        self._queue.put((digest, data))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


def _stream_full(
    source: EntrySource, out: BinaryIO, cobj: zstandard.ZstdCompressionObj | None
) -> tuple[bytes, int, bytes, int]:
    """Copy (cobj None) or compress an image into out; returns image and stored hash/size."""
    image_digest, data_digest = hashlib.sha256(), hashlib.sha256()
    image_size = stored_size = 0
    hasher = _BackgroundHasher()
    try:
        with source.image_path.open("rb") as raw_in:
            while chunk := raw_in.read(CHUNK_SIZE):
                image_size += len(chunk)
                hasher.update(image_digest, chunk)
                stored = cobj.compress(chunk) if cobj is not None else chunk
                if stored:
                    hasher.update(data_digest, stored)
                    out.write(stored)
                    stored_size += len(stored)
        if cobj is not None:
            tail = cobj.flush()
            hasher.update(data_digest, tail)
            out.write(tail)
            stored_size += len(tail)
    finally:
        hasher.close()
    return image_digest.digest(), image_size, data_digest.digest(), stored_size


def _write_full(source: EntrySource, out: BinaryIO, options: BuildOptions) -> Entry:
    """Stream-compress one image into out (at its current position)."""
    start = out.tell()
    params = zstandard.ZstdCompressionParameters.from_level(
        options.level, threads=options.threads, write_checksum=False
    )
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    image_sha, image_size, stored_sha, stored_size = _stream_full(source, out, cobj)
    compression = COMPRESSION_ZSTD
    if stored_size >= image_size:
        # Incompressible (already compressed or encrypted) images are stored as they are.
        out.seek(start)
        out.truncate()
        image_sha, image_size, stored_sha, stored_size = _stream_full(source, out, None)
        compression = COMPRESSION_NONE
    return Entry(
        ecu_id=source.ecu_id,
        current_version=source.current_version,
        target_version=source.target_version,
        delta_base_version="",
        compression=compression,
        delta_algorithm=DeltaAlgorithm.NONE,
        data_offset=start,
        stored_size=stored_size,
        image_size=image_size,
        image_sha256=image_sha,
        data_sha256=stored_sha,
        base_sha256=b"\0" * 32,
    )


def _try_delta(source: EntrySource, full: Entry, out: BinaryIO, options: BuildOptions) -> Entry:
    """Replace the full image just written by a delta if one is verified and smaller."""
    if source.base_path is None or options.delta_algorithm == DeltaAlgorithm.NONE:
        return full
    base_size = source.base_path.stat().st_size
    # Deltas hold both images in memory; past the bound the full image is the bounded choice.
    if max(base_size, full.image_size) > options.delta_max_bytes:
        return full
    base = source.base_path.read_bytes()
    target = source.image_path.read_bytes()
    try:
        delta = make_delta(options.delta_algorithm, base, target, level=options.delta_level)
        rebuilt = apply_delta(options.delta_algorithm, base, delta, max_size=len(target))
    except DeltaError as exc:
        raise OtapError(f"{source.ecu_id}: delta failed: {exc}") from exc
    if hashlib.sha256(rebuilt).digest() != full.image_sha256:
        raise OtapError(f"{source.ecu_id}: delta does not reproduce the target image")
    if len(delta) >= full.stored_size:
        return full
    out.seek(full.data_offset)
    out.truncate()
    out.write(delta)
    return Entry(
        ecu_id=full.ecu_id,
        current_version=full.current_version,
        target_version=full.target_version,
        delta_base_version=source.current_version,
        compression=COMPRESSION_NONE,
        delta_algorithm=options.delta_algorithm,
        data_offset=full.data_offset,
        stored_size=len(delta),
        image_size=full.image_size,
        image_sha256=full.image_sha256,
        data_sha256=hashlib.sha256(delta).digest(),
        base_sha256=hashlib.sha256(base).digest(),
    )


def _validate_sources(zonal_gateway_id: str, sources: Sequence[EntrySource]) -> None:
    if not GATEWAY_ID_RE.match(zonal_gateway_id):
        raise OtapError(f"zonal_gateway_id {zonal_gateway_id!r} is not allowed")
    if not 1 <= len(sources) <= MAX_ECU_COUNT:
        raise OtapError(f"ecu_count must be 1..{MAX_ECU_COUNT}, got {len(sources)}")
    seen: set[str] = set()
    for source in sources:
        _pack_text(source.ecu_id, 16, "ecu_id", ECU_ID_RE)
        _pack_text(source.current_version, 64, "current_version", VERSION_RE)
        _pack_text(source.target_version, 64, "target_version", VERSION_RE)
        if source.ecu_id in seen:
            raise OtapError(f"ecu_id {source.ecu_id!r} appears twice")
        seen.add(source.ecu_id)


def write_package(
    out: BinaryIO,
    *,
    zonal_gateway_id: str,
    sources: Sequence[EntrySource],
    signer: Signer,
    package_version: int,
    expires_at: dt.datetime,
    created_at: dt.datetime | None = None,
    options: BuildOptions | None = None,
) -> BuildResult:
    """Write a signed package to a seekable, empty binary file; memory stays bounded."""
    options = options or BuildOptions()
    created_at = created_at or dt.datetime.now(tz=dt.UTC)
    _validate_sources(zonal_gateway_id, sources)
    if not 0 <= package_version < 1 << 63:
        raise OtapError("package_version must fit in 63 bits")
    data_offset = data_offset_for(len(sources))
    # Data first, at its final offset; the table and signatures are filled in afterwards.
    out.seek(data_offset)
    out.truncate()
    entries: list[Entry] = []
    for source in sources:
        full = _write_full(source, out, options)
        entry = _try_delta(source, full, out, options)
        out.seek(entry.data_offset + entry.stored_size)
        entries.append(entry)
    total_size = out.tell()
    header = HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        HEADER_SIZE,
        ENTRY_SIZE,
        len(entries),
        0,
        _pack_text(zonal_gateway_id, 32, "zonal_gateway_id", GATEWAY_ID_RE),
        b"\0" * 16,
    )
    manifest = MANIFEST.pack(
        package_version,
        _to_epoch(created_at),
        _to_epoch(expires_at),
        total_size,
        data_offset,
        signer.mldsa_key_id,
        signer.ecdsa_key_id,
        b"\0" * 56,
    )
    signed = header + b"".join(_pack_entry(e) for e in entries) + manifest
    mldsa_sig, ecdsa_sig = signer.sign_manifest(signed, context=MLDSA_CONTEXT)
    if len(mldsa_sig) != MLDSA65_SIGNATURE_SIZE or len(ecdsa_sig) > ECDSA_MAX_SIGNATURE_SIZE:
        raise OtapError("signer returned signatures of unexpected size")
    signatures = SIGNATURES.pack(
        len(mldsa_sig), mldsa_sig, len(ecdsa_sig), ecdsa_sig.ljust(72, b"\0"), b"\0" * 7
    )
    out.seek(0)
    out.write(signed + signatures)
    out.flush()
    out.seek(0)
    file_sha = hashlib.sha256()
    while chunk := out.read(CHUNK_SIZE):
        file_sha.update(chunk)
    package = parse_package(out)
    return BuildResult(package=package, sha256=file_sha.hexdigest(), size=total_size)


# ---------------------------------------------------------------------------------------------
# Parser


def _read_exact(fh: BinaryIO, size: int, what: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise OtapError(f"truncated package: {what} needs {size} bytes, found {len(data)}")
    return data


def _parse_header(raw: bytes) -> tuple[int, str]:
    magic, version, header_size, entry_size, count, flags, gateway, reserved = HEADER.unpack(raw)
    if magic != MAGIC:
        raise OtapError(f"not an OTAP package (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise OtapError(f"unsupported format_version {version} (this parser reads 1)")
    if header_size != HEADER_SIZE or entry_size != ENTRY_SIZE:
        raise OtapError(f"header_size/entry_size {header_size}/{entry_size} do not match v1")
    if not 1 <= count <= MAX_ECU_COUNT:
        raise OtapError(f"ecu_count {count} is outside 1..{MAX_ECU_COUNT}")
    if flags or reserved.strip(b"\0"):
        raise OtapError("header flags/reserved bytes must be zero")
    return count, _unpack_text(gateway, "zonal_gateway_id", GATEWAY_ID_RE)


def _parse_entry(raw: bytes, index: int) -> Entry:
    (ecu, current, target, base_version, compression, delta, reserved1, offset, stored,
     image_size, image_sha, data_sha, base_sha, reserved2) = ENTRY.unpack(raw)  # fmt: skip
    where = f"entry {index}"
    if reserved1.strip(b"\0") or reserved2.strip(b"\0"):
        raise OtapError(f"{where}: reserved bytes must be zero")
    if compression not in COMPRESSION_NAMES:
        raise OtapError(f"{where}: unknown compression {compression}")
    try:
        algorithm = DeltaAlgorithm(delta)
    except ValueError:
        raise OtapError(f"{where}: unknown delta_algorithm {delta}") from None
    if image_size > MAX_IMAGE_SIZE or stored > MAX_IMAGE_SIZE:
        raise OtapError(f"{where}: image_size/stored_size exceed {MAX_IMAGE_SIZE}")
    entry = Entry(
        ecu_id=_unpack_text(ecu, f"{where} ecu_id", ECU_ID_RE),
        current_version=_unpack_text(current, f"{where} current_version", VERSION_RE),
        target_version=_unpack_text(target, f"{where} target_version", VERSION_RE),
        delta_base_version=_unpack_text(base_version, f"{where} delta_base_version", VERSION_RE),
        compression=compression,
        delta_algorithm=algorithm,
        data_offset=offset,
        stored_size=stored,
        image_size=image_size,
        image_sha256=image_sha,
        data_sha256=data_sha,
        base_sha256=base_sha,
    )
    if not entry.target_version:
        raise OtapError(f"{where}: target_version is empty")
    if entry.is_delta != bool(entry.delta_base_version):
        raise OtapError(f"{where}: delta_base_version must be set exactly for delta entries")
    if entry.is_delta and compression != COMPRESSION_NONE:
        raise OtapError(f"{where}: delta entries carry their own compression")
    if not entry.is_delta and base_sha.strip(b"\0"):
        raise OtapError(f"{where}: base_sha256 must be zero for a full image")
    if compression == COMPRESSION_NONE and not entry.is_delta and stored != image_size:
        raise OtapError(f"{where}: uncompressed stored_size differs from image_size")
    return entry


def parse_package(fh: BinaryIO) -> Package:
    """Parse and structurally check a package; signatures and data are not checked here."""
    fh.seek(0, os.SEEK_END)
    file_size = fh.tell()
    fh.seek(0)
    count, gateway = _parse_header(_read_exact(fh, HEADER_SIZE, "header"))
    if file_size < data_offset_for(count):
        raise OtapError(
            f"truncated package: ecu_count {count} needs at least {data_offset_for(count)} "
            f"bytes, file has {file_size}"
        )
    fh.seek(0)
    signed = _read_exact(fh, signed_size_for(count), "signed region")
    entries = tuple(
        _parse_entry(signed[HEADER_SIZE + i * ENTRY_SIZE : HEADER_SIZE + (i + 1) * ENTRY_SIZE], i)
        for i in range(count)
    )
    version, created, expires, total, data_offset, mldsa_id, ecdsa_id, reserved = MANIFEST.unpack(
        signed[-MANIFEST_SIZE:]
    )
    if reserved.strip(b"\0"):
        raise OtapError("manifest reserved bytes must be zero")
    if data_offset != data_offset_for(count):
        raise OtapError(f"manifest data_offset {data_offset} != {data_offset_for(count)}")
    if total != file_size:
        raise OtapError(f"manifest total_size {total} != file size {file_size} (truncated?)")
    _check_layout(entries, data_offset, total)
    mldsa_len, mldsa_sig, ecdsa_len, ecdsa_sig, sig_reserved = SIGNATURES.unpack(
        _read_exact(fh, SIGNATURE_BLOCK_SIZE, "signature block")
    )
    if mldsa_len != MLDSA65_SIGNATURE_SIZE:
        raise OtapError(f"ML-DSA-65 signature length {mldsa_len} != {MLDSA65_SIGNATURE_SIZE}")
    if not 8 <= ecdsa_len <= ECDSA_MAX_SIGNATURE_SIZE or ecdsa_sig[ecdsa_len:].strip(b"\0"):
        raise OtapError(f"ECDSA signature length {ecdsa_len} is invalid")
    if sig_reserved.strip(b"\0"):
        raise OtapError("signature block reserved bytes must be zero")
    return Package(
        zonal_gateway_id=gateway,
        entries=entries,
        package_version=version,
        created_at=_from_epoch(created, "created_at"),
        expires_at=_from_epoch(expires, "expires_at"),
        total_size=total,
        data_offset=data_offset,
        mldsa_key_id=mldsa_id,
        ecdsa_key_id=ecdsa_id,
        mldsa_signature=mldsa_sig,
        ecdsa_signature=ecdsa_sig[:ecdsa_len],
        signed_bytes=signed,
    )


def _check_layout(entries: Sequence[Entry], data_offset: int, total: int) -> None:
    expected = data_offset
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if entry.ecu_id in seen:
            raise OtapError(f"entry {index}: ecu_id {entry.ecu_id!r} appears twice")
        seen.add(entry.ecu_id)
        if entry.data_offset != expected:
            raise OtapError(f"entry {index}: data_offset {entry.data_offset} != {expected}")
        expected += entry.stored_size
    if expected != total:
        raise OtapError(f"data section ends at {expected}, total_size is {total}")


# ---------------------------------------------------------------------------------------------
# Verifier and extractor


def _iter_range(fh: BinaryIO, offset: int, size: int) -> Iterator[bytes]:
    fh.seek(offset)
    remaining = size
    while remaining:
        chunk = fh.read(min(CHUNK_SIZE, remaining))
        if not chunk:
            raise OtapError("truncated package: data ended early")
        remaining -= len(chunk)
        yield chunk


def verify_package(
    fh: BinaryIO,
    *,
    trust: TrustSet,
    min_package_version: int | None = None,
    now: dt.datetime | None = None,
) -> Package:
    """Check structure, both signatures, expiry, anti-rollback and every data hash."""
    package = parse_package(fh)
    trust.verify_manifest(
        package.signed_bytes,
        context=MLDSA_CONTEXT,
        mldsa_key_id=package.mldsa_key_id,
        mldsa_signature=package.mldsa_signature,
        ecdsa_key_id=package.ecdsa_key_id,
        ecdsa_signature=package.ecdsa_signature,
    )
    now = now or dt.datetime.now(tz=dt.UTC)
    if package.expires_at <= now:
        raise OtapError(f"package expired at {package.expires_at.isoformat()}")
    if min_package_version is not None and package.package_version < min_package_version:
        raise OtapError(
            f"package_version {package.package_version} is older than {min_package_version} "
            "(rollback refused)"
        )
    for index, entry in enumerate(package.entries):
        digest = hashlib.sha256()
        for chunk in _iter_range(fh, entry.data_offset, entry.stored_size):
            digest.update(chunk)
        if digest.digest() != entry.data_sha256:
            raise OtapError(f"entry {index} ({entry.ecu_id}): data_sha256 mismatch")
    return package


def _decompress_to(fh: BinaryIO, entry: Entry, out: BinaryIO) -> bytes:
    """Stream one full-image entry to out and return the SHA-256 of what was written."""
    digest = hashlib.sha256()
    written = 0

    def emit(data: bytes) -> None:
        nonlocal written
        written += len(data)
        if written > entry.image_size:
            raise OtapError(f"{entry.ecu_id}: image is larger than image_size")
        digest.update(data)
        out.write(data)

    chunks = _iter_range(fh, entry.data_offset, entry.stored_size)
    if entry.compression == COMPRESSION_NONE:
        for chunk in chunks:
            emit(chunk)
    else:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        try:
            for chunk in chunks:
                emit(dobj.decompress(chunk))
        except zstandard.ZstdError as exc:
            raise OtapError(f"{entry.ecu_id}: zstd data is corrupt: {exc}") from None
        if not dobj.eof:
            raise OtapError(f"{entry.ecu_id}: zstd frame is incomplete")
    if written != entry.image_size:
        raise OtapError(f"{entry.ecu_id}: image is {written} bytes, expected {entry.image_size}")
    return digest.digest()


def _apply_delta_entry(fh: BinaryIO, entry: Entry, base_dir: Path | None, out: BinaryIO) -> bytes:
    if base_dir is None:
        raise OtapError(f"{entry.ecu_id}: delta entry needs the current image (--base DIR)")
    base_path = base_dir / f"{entry.ecu_id}.bin"
    try:
        base = base_path.read_bytes()
    except OSError as exc:
        raise OtapError(f"{entry.ecu_id}: cannot read base image: {exc.strerror}") from None
    if hashlib.sha256(base).digest() != entry.base_sha256:
        raise OtapError(f"{entry.ecu_id}: base image is not version {entry.delta_base_version}")
    delta = b"".join(_iter_range(fh, entry.data_offset, entry.stored_size))
    try:
        image = apply_delta(entry.delta_algorithm, base, delta, max_size=entry.image_size)
    except DeltaError as exc:
        raise OtapError(f"{entry.ecu_id}: delta does not apply: {exc}") from None
    if len(image) != entry.image_size:
        raise OtapError(f"{entry.ecu_id}: image is {len(image)} bytes, expected {entry.image_size}")
    out.write(image)
    return hashlib.sha256(image).digest()


def extract_package(
    fh: BinaryIO,
    dest: Path,
    *,
    trust: TrustSet,
    base_dir: Path | None = None,
    min_package_version: int | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Path]:
    """Verify, then write each target image to dest/<ECU id>.bin; returns ecu_id -> path."""
    package = verify_package(fh, trust=trust, min_package_version=min_package_version, now=now)
    dest.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for entry in package.entries:
        final = dest / f"{entry.ecu_id}.bin"
        # Write beside the final name and rename only once the hash matches, so a bad image
        # never appears under a name a flasher would pick up.
        with tempfile.NamedTemporaryFile(dir=dest, prefix=".otap-", delete=False) as tmp:
            tmp_path = Path(tmp.name)
            try:
                if entry.is_delta:
                    image_sha = _apply_delta_entry(fh, entry, base_dir, tmp)
                else:
                    image_sha = _decompress_to(fh, entry, tmp)
            except BaseException:
                tmp_path.unlink(missing_ok=True)
                raise
        if image_sha != entry.image_sha256:
            tmp_path.unlink(missing_ok=True)
            raise OtapError(f"{entry.ecu_id}: image_sha256 mismatch after extraction")
        tmp_path.replace(final)
        written[entry.ecu_id] = final
    return written


# ---------------------------------------------------------------------------------------------
# Command line


def describe(package: Package) -> str:
    """Human-readable summary of a parsed package."""
    lines = [
        f"zonal gateway   {package.zonal_gateway_id}",
        f"package version {package.package_version}",
        f"created         {package.created_at.isoformat()}",
        f"expires         {package.expires_at.isoformat()}",
        f"size            {package.total_size} bytes",
        f"ML-DSA-65 key   {package.mldsa_key_id.hex()}",
        f"ECDSA-P256 key  {package.ecdsa_key_id.hex()}",
    ]
    for entry in package.entries:
        kind = (
            f"delta {entry.delta_algorithm.label} from {entry.delta_base_version}"
            if entry.is_delta
            else COMPRESSION_NAMES[entry.compression]
        )
        lines.append(
            f"  {entry.ecu_id:<16} {entry.current_version or '-':>12} -> "
            f"{entry.target_version:<12} {entry.image_size:>12} B  stored {entry.stored_size} B"
            f" ({kind})  sha256 {entry.image_sha256.hex()}"
        )
    return "\n".join(lines)


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: Callable[[str], None] = print,
    now: dt.datetime | None = None,
) -> int:
    """``python -m firmware.otap verify PACKAGE --trust KEYS [...]``; returns an exit code."""
    from firmware.signing import SigningError, load_trust_set

    parser = argparse.ArgumentParser(prog="python -m firmware.otap")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="check structure, hashes and both signatures")
    verify.add_argument("package", type=Path)
    verify.add_argument("--trust", type=Path, required=True, help="PEM bundle or directory")
    verify.add_argument("--min-version", type=int, default=None, help="lowest package version")
    verify.add_argument("--extract", type=Path, default=None, help="write images to DIR")
    verify.add_argument("--base", type=Path, default=None, help="current images for deltas")
    args = parser.parse_args(argv)
    try:
        trust = load_trust_set(args.trust)
        with args.package.open("rb") as fh:
            if args.extract is not None:
                extract_package(
                    fh,
                    args.extract,
                    trust=trust,
                    base_dir=args.base,
                    min_package_version=args.min_version,
                    now=now,
                )
                fh.seek(0)
            package = verify_package(fh, trust=trust, min_package_version=args.min_version, now=now)
    except (OtapError, SigningError) as exc:
        print(f"REJECTED: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"REJECTED: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    stdout(describe(package))
    stdout("OK: structure, data hashes, ML-DSA-65 and ECDSA-P256 signatures verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
