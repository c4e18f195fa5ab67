"""OTAP byte layout, limits, errors and the value types shared by writer and reader.

The layout is specified in docs/PACKAGE_FORMAT.md; the structs below are the single source of
truth for it (firmware/tests/test_package_format_doc.py checks the document against them).
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from firmware.deltas import DeltaAlgorithm

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
# \A and \Z, not ^ and $: "$" also matches before a trailing newline, which must not pass.
ECU_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{1,16}\Z")
GATEWAY_ID_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,32}\Z")
VERSION_RE = re.compile(r"\A[0-9A-Za-z.+-]{0,64}\Z")

# Largest zstd window a vehicle must provide to decode a full image: every level up to 19
# fits (the writer caps higher levels), and 8 MiB is affordable on a zonal gateway.
ZSTD_MAX_WINDOW_LOG = 23
# A zstd patch-from frame's window reaches back over the whole base image, as zstd
# --patch-from --long=31 does; deltas are only built for images up to this size.
DELTA_MAX_WINDOW_LOG = 31
MAX_DELTA_IMAGE_SIZE = 1 << 31
# created_at may be this far ahead of the vehicle's clock before the clock is distrusted.
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
# P-256 group order; signatures are stored with s <= n/2 so that each package has one encoding.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


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


def pack_text(value: str, size: int, name: str, pattern: re.Pattern[str]) -> bytes:
    if not pattern.fullmatch(value):
        raise OtapError(f"{name} {value!r} is not allowed (pattern {pattern.pattern})")
    return value.encode("ascii").ljust(size, b"\0")


def unpack_text(raw: bytes, name: str, pattern: re.Pattern[str]) -> str:
    text, _, padding = raw.partition(b"\0")
    if padding.strip(b"\0"):
        raise OtapError(f"{name}: bytes after the NUL terminator must be zero")
    try:
        value = text.decode("ascii")
    except UnicodeDecodeError:
        raise OtapError(f"{name}: not ASCII") from None
    if not pattern.fullmatch(value):
        raise OtapError(f"{name} {value!r} is not allowed")
    return value


def is_strict_der_low_s(signature: bytes) -> bool:
    """True for an ECDSA P-256 signature in strict DER with 1 <= r < n and 1 <= s <= n/2."""
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        return False
    in_range = 1 <= r < P256_ORDER and 1 <= s <= P256_ORDER // 2
    return in_range and encode_dss_signature(r, s) == signature


def low_s_signature(signature: bytes) -> bytes:
    """The low-S form of a DER ECDSA P-256 signature: (r, s) and (r, n - s) both verify."""
    r, s = decode_dss_signature(signature)
    return encode_dss_signature(r, min(s, P256_ORDER - s))


def data_offset_for(ecu_count: int) -> int:
    """Offset of the first data byte for a package of ecu_count entries."""
    return signed_size_for(ecu_count) + SIGNATURE_BLOCK_SIZE


def signed_size_for(ecu_count: int) -> int:
    """Length of the signed region (header, entry table, manifest)."""
    return HEADER_SIZE + ENTRY_SIZE * ecu_count + MANIFEST_SIZE


def pack_entry(entry: Entry) -> bytes:
    return ENTRY.pack(
        pack_text(entry.ecu_id, 16, "ecu_id", ECU_ID_RE),
        pack_text(entry.current_version, 64, "current_version", VERSION_RE),
        pack_text(entry.target_version, 64, "target_version", VERSION_RE),
        pack_text(entry.delta_base_version, 64, "delta_base_version", VERSION_RE),
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


def to_epoch(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise OtapError("timestamps must be timezone-aware")
    return int(moment.timestamp())


def from_epoch(seconds: int, name: str) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise OtapError(f"{name} {seconds} is out of range") from None
