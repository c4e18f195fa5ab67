"""Streaming OTAP writer: bounded memory however large the images are."""

from __future__ import annotations

import datetime as dt
import hashlib
import queue
import threading
from collections.abc import Callable, Sequence
from typing import BinaryIO

import zstandard

from firmware.deltas import DeltaAlgorithm, DeltaError, apply_delta, make_delta
from firmware.otap.format import (
    CHUNK_SIZE,
    COMPRESSION_NONE,
    COMPRESSION_ZSTD,
    ECDSA_MAX_SIGNATURE_SIZE,
    ECU_ID_RE,
    ENTRY_SIZE,
    FORMAT_VERSION,
    GATEWAY_ID_RE,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MANIFEST,
    MAX_ECU_COUNT,
    MLDSA65_SIGNATURE_SIZE,
    MLDSA_CONTEXT,
    SIGNATURES,
    VERSION_RE,
    ZSTD_MAX_WINDOW_LOG,
    BuildOptions,
    BuildResult,
    Entry,
    EntrySource,
    OtapError,
    Signer,
    data_offset_for,
    low_s_signature,
    pack_entry,
    pack_text,
    to_epoch,
)
from firmware.otap.reader import parse_package


class _Pipeline:
    """Runs hashing and writing on a helper thread while the caller compresses the next chunk.

    hashlib, file writes and zstd all release the GIL on large buffers, so the caller's
    compression and the helper's hashing and I/O overlap on separate cores, the way the zstd
    command line keeps its compressor busy. Jobs run in submission order, so every hash sees
    its bytes in file order; the bounded queue keeps memory at a few chunks however large the
    image is.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Callable[[bytes], object], bytes] | None] = queue.Queue(
            maxsize=8
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="otap-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining so the producer never blocks on a full queue
            try:
                job[0](job[1])
            except BaseException as exc:  # re-raised in the caller's thread by close()
                self._error = exc

    def submit(self, fn: Callable[[bytes], object], data: bytes) -> None:
        self._queue.put((fn, data))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _stream_full(
    source: EntrySource, out: BinaryIO, cobj: zstandard.ZstdCompressionObj | None
) -> tuple[bytes, int, bytes, int]:
    """Copy (cobj None) or compress an image into out; returns image and stored hash/size."""
    image_digest, data_digest = hashlib.sha256(), hashlib.sha256()
    image_size = stored_size = 0
    pipeline = _Pipeline()

    def emit(stored: bytes) -> None:
        nonlocal stored_size
        pipeline.submit(data_digest.update, stored)
        pipeline.submit(out.write, stored)
        stored_size += len(stored)

    try:
        with source.image_path.open("rb") as raw_in:
            while chunk := raw_in.read(CHUNK_SIZE):
                image_size += len(chunk)
                pipeline.submit(image_digest.update, chunk)
                stored = cobj.compress(chunk) if cobj is not None else chunk
                if stored:
                    emit(stored)
        if cobj is not None:
            emit(cobj.flush())
    finally:
        pipeline.close()
    return image_digest.digest(), image_size, data_digest.digest(), stored_size


def _write_full(source: EntrySource, out: BinaryIO, options: BuildOptions) -> Entry:
    """Stream-compress one image into out (at its current position)."""
    start = out.tell()
    level_params = zstandard.ZstdCompressionParameters.from_level(options.level)
    params = zstandard.ZstdCompressionParameters.from_level(
        options.level,
        threads=options.threads,
        write_checksum=False,
        # Levels above 19 would otherwise ask vehicles for windows up to 128 MiB.
        window_log=min(level_params.window_log, ZSTD_MAX_WINDOW_LOG),
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
    if not GATEWAY_ID_RE.fullmatch(zonal_gateway_id):
        raise OtapError(f"zonal_gateway_id {zonal_gateway_id!r} is not allowed")
    if not 1 <= len(sources) <= MAX_ECU_COUNT:
        raise OtapError(f"ecu_count must be 1..{MAX_ECU_COUNT}, got {len(sources)}")
    seen: set[str] = set()
    for source in sources:
        pack_text(source.ecu_id, 16, "ecu_id", ECU_ID_RE)
        pack_text(source.current_version, 64, "current_version", VERSION_RE)
        pack_text(source.target_version, 64, "target_version", VERSION_RE)
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
        pack_text(zonal_gateway_id, 32, "zonal_gateway_id", GATEWAY_ID_RE),
        b"\0" * 16,
    )
    manifest = MANIFEST.pack(
        package_version,
        to_epoch(created_at),
        to_epoch(expires_at),
        total_size,
        data_offset,
        signer.mldsa_key_id,
        signer.ecdsa_key_id,
        b"\0" * 56,
    )
    signed = header + b"".join(pack_entry(e) for e in entries) + manifest
    mldsa_sig, ecdsa_sig = signer.sign_manifest(signed, context=MLDSA_CONTEXT)
    ecdsa_sig = low_s_signature(ecdsa_sig)
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
