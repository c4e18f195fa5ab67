"""OTAP parser, verifier and extractor: every malformed input ends in OtapError."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import zstandard

from firmware.deltas import DeltaAlgorithm, DeltaError, apply_delta
from firmware.otap.format import (
    CHUNK_SIZE,
    COMPRESSION_NAMES,
    COMPRESSION_NONE,
    DELTA_MAX_WINDOW_LOG,
    ECDSA_MAX_SIGNATURE_SIZE,
    ECU_ID_RE,
    ENTRY,
    ENTRY_SIZE,
    FORMAT_VERSION,
    GATEWAY_ID_RE,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MANIFEST,
    MANIFEST_SIZE,
    MAX_CLOCK_SKEW,
    MAX_DELTA_IMAGE_SIZE,
    MAX_ECU_COUNT,
    MAX_IMAGE_SIZE,
    MLDSA65_SIGNATURE_SIZE,
    MLDSA_CONTEXT,
    SIGNATURE_BLOCK_SIZE,
    SIGNATURES,
    VERSION_RE,
    ZSTD_MAX_WINDOW_LOG,
    Entry,
    OtapError,
    Package,
    TrustSet,
    data_offset_for,
    from_epoch,
    is_strict_der_low_s,
    signed_size_for,
    unpack_text,
)


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
    return count, unpack_text(gateway, "zonal_gateway_id", GATEWAY_ID_RE)


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
        ecu_id=unpack_text(ecu, f"{where} ecu_id", ECU_ID_RE),
        current_version=unpack_text(current, f"{where} current_version", VERSION_RE),
        target_version=unpack_text(target, f"{where} target_version", VERSION_RE),
        delta_base_version=unpack_text(base_version, f"{where} delta_base_version", VERSION_RE),
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
    # A delta is decoded in memory next to its base image: bounded tighter than a full image.
    if entry.is_delta and max(image_size, stored) > MAX_DELTA_IMAGE_SIZE:
        raise OtapError(f"{where}: delta image_size/stored_size exceed {MAX_DELTA_IMAGE_SIZE}")
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
    if not is_strict_der_low_s(ecdsa_sig[:ecdsa_len]):
        raise OtapError(
            "ECDSA signature is not strict DER with 1 <= r < n and 1 <= s <= n/2 "
            "(high S is refused so that every package has a single encoding)"
        )
    if sig_reserved.strip(b"\0"):
        raise OtapError("signature block reserved bytes must be zero")
    return Package(
        zonal_gateway_id=gateway,
        entries=entries,
        package_version=version,
        created_at=from_epoch(created, "created_at"),
        expires_at=from_epoch(expires, "expires_at"),
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
    installed_package_version: int | None = None,
    now: dt.datetime | None = None,
) -> Package:
    """Check structure, both signatures, expiry, anti-rollback and every data hash.

    installed_package_version is the package_version of the last package the vehicle
    installed for this zone; only a strictly greater one is accepted, so that package, or an
    older one, cannot be replayed.
    """
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
    if package.created_at > now + MAX_CLOCK_SKEW:
        raise OtapError(
            f"package created_at {package.created_at.isoformat()} is after this clock's "
            f"{now.isoformat()} by more than {MAX_CLOCK_SKEW}: the clock cannot be trusted"
        )
    if (
        installed_package_version is not None
        and package.package_version <= installed_package_version
    ):
        raise OtapError(
            f"package_version {package.package_version} is not newer than the installed "
            f"{installed_package_version} (replay or rollback refused)"
        )
    for index, entry in enumerate(package.entries):
        digest = hashlib.sha256()
        for chunk in _iter_range(fh, entry.data_offset, entry.stored_size):
            digest.update(chunk)
        if digest.digest() != entry.data_sha256:
            raise OtapError(f"entry {index} ({entry.ecu_id}): data_sha256 mismatch")
    return package


ZSTD_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_MAX_BLOCK_SIZE = 128 << 10
_ZSTD_RAW_BLOCK, _ZSTD_RLE_BLOCK, _ZSTD_RESERVED_BLOCK = 0, 1, 3


def _count_zstd_frames(
    fh: BinaryIO, offset: int, size: int, *, max_window_log: int, where: str
) -> int:
    """Walk the Zstandard frames filling [offset, offset + size) without decoding them.

    Only whole Zstandard frames (RFC 8878 3.1.1) may fill the range: a skippable frame,
    anything after the last frame or a frame cut short is refused, which a decoder reading
    frame after frame would skip or silently stop at. Every step advances by at least three
    bytes, so the walk ends within size / 3 steps.
    """
    end = offset + size
    position = offset
    frames = 0
    while position < end:
        at = f"{where}: byte {position - offset} of the entry"
        fh.seek(position)
        head = fh.read(min(18, end - position))
        if head[:4] != ZSTD_FRAME_MAGIC:
            if len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18":
                raise OtapError(f"{at}: skippable zstd frames are not allowed")
            raise OtapError(f"{at}: not a zstd frame (trailing data after the last frame?)")
        try:
            header_size = zstandard.frame_header_size(head)
            params = zstandard.get_frame_parameters(head)
        except zstandard.ZstdError:
            raise OtapError(f"{at}: truncated or invalid zstd frame header") from None
        if params.window_size > 1 << max_window_log:
            raise OtapError(
                f"{at}: zstd window {params.window_size} exceeds 2^{max_window_log} bytes"
            )
        position += header_size
        while True:
            if position + 3 > end:
                raise OtapError(f"{at}: zstd frame is truncated")
            fh.seek(position)
            block = int.from_bytes(fh.read(3), "little")
            last, kind, block_size = block & 1, (block >> 1) & 3, block >> 3
            if kind == _ZSTD_RESERVED_BLOCK or block_size > ZSTD_MAX_BLOCK_SIZE:
                raise OtapError(f"{at}: invalid zstd block header")
            position += 3 + (1 if kind == _ZSTD_RLE_BLOCK else block_size)
            if last:
                break
        position += 4 if params.has_checksum else 0
        if position > end:
            raise OtapError(f"{at}: zstd frame is truncated")
        frames += 1
    return frames


class _RangeReader:
    """File-like view of [offset, offset + size) of fh for zstandard's stream reader."""

    def __init__(self, fh: BinaryIO, offset: int, size: int) -> None:
        self._fh, self._position, self._remaining = fh, offset, size

    def read(self, size: int = -1) -> bytes:
        size = self._remaining if size < 0 else min(size, self._remaining)
        self._fh.seek(self._position)
        data = self._fh.read(size)
        self._position += len(data)
        self._remaining -= len(data)
        return data


def _decompress_to(fh: BinaryIO, entry: Entry, out: BinaryIO) -> bytes:
    """Stream one full-image entry to out and return the SHA-256 of what was written.

    Output is read in pieces of at most CHUNK_SIZE and never past image_size + 1 bytes, so a
    small entry that decodes to gigabytes costs no more memory than an honest one.
    """
    digest = hashlib.sha256()
    written = 0

    def emit(data: bytes) -> None:
        nonlocal written
        written += len(data)
        if written > entry.image_size:
            raise OtapError(f"{entry.ecu_id}: image is larger than image_size")
        digest.update(data)
        out.write(data)

    if entry.compression == COMPRESSION_NONE:
        for chunk in _iter_range(fh, entry.data_offset, entry.stored_size):
            emit(chunk)
    else:
        frames = _count_zstd_frames(
            fh,
            entry.data_offset,
            entry.stored_size,
            max_window_log=ZSTD_MAX_WINDOW_LOG,
            where=entry.ecu_id,
        )
        if frames == 0:
            raise OtapError(f"{entry.ecu_id}: no zstd frame in a zstd entry")
        decompressor = zstandard.ZstdDecompressor(max_window_size=1 << ZSTD_MAX_WINDOW_LOG)
        reader = decompressor.stream_reader(
            _RangeReader(fh, entry.data_offset, entry.stored_size),
            read_size=CHUNK_SIZE,
            read_across_frames=True,
        )
        try:
            while chunk := reader.read(min(CHUNK_SIZE, entry.image_size - written + 1)):
                emit(chunk)
        except zstandard.ZstdError as exc:
            raise OtapError(f"{entry.ecu_id}: zstd data is corrupt: {exc}") from None
    if written != entry.image_size:
        raise OtapError(f"{entry.ecu_id}: image is {written} bytes, expected {entry.image_size}")
    return digest.digest()


def _check_delta(entry: Entry, delta: bytes) -> None:
    """A delta must decode to image_size bytes by its own header before anything is allocated."""
    if entry.delta_algorithm == DeltaAlgorithm.ZSTD_PATCH_FROM:
        frames = _count_zstd_frames(
            io.BytesIO(delta),
            0,
            len(delta),
            max_window_log=DELTA_MAX_WINDOW_LOG,
            where=entry.ecu_id,
        )
        if frames != 1:
            raise OtapError(f"{entry.ecu_id}: a zstd delta is exactly one zstd frame, not {frames}")
        declared = zstandard.get_frame_parameters(delta).content_size
    else:
        if len(delta) < 32 or delta[:8] != b"BSDIFF40":
            raise OtapError(f"{entry.ecu_id}: not a BSDIFF40 patch")
        declared = int.from_bytes(delta[24:32], "little")
    if declared != entry.image_size:
        raise OtapError(
            f"{entry.ecu_id}: delta declares {declared} bytes, image_size is {entry.image_size}"
        )


def _apply_delta_entry(fh: BinaryIO, entry: Entry, base_dir: Path | None, out: BinaryIO) -> bytes:
    if base_dir is None:
        raise OtapError(f"{entry.ecu_id}: delta entry needs the current image (--base DIR)")
    delta = b"".join(_iter_range(fh, entry.data_offset, entry.stored_size))
    _check_delta(entry, delta)
    base_path = base_dir / f"{entry.ecu_id}.bin"
    try:
        base = base_path.read_bytes()
    except OSError as exc:
        raise OtapError(f"{entry.ecu_id}: cannot read base image: {exc.strerror}") from None
    if hashlib.sha256(base).digest() != entry.base_sha256:
        raise OtapError(f"{entry.ecu_id}: base image is not version {entry.delta_base_version}")
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
    installed_package_version: int | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Path]:
    """Verify, then write each target image to dest/<ECU id>.bin; returns ecu_id -> path."""
    package = verify_package(
        fh, trust=trust, installed_package_version=installed_package_version, now=now
    )
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
