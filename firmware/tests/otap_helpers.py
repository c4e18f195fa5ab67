"""Builders shared by the OTAP format tests (no database needed)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

from firmware import otap, signing
from firmware.otap.format import low_s_signature

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=30)


class KeyRing:
    """A key directory with one active hybrid key, its signer and its trust set."""

    def __init__(self, key_dir: Path) -> None:
        self.key_dir = key_dir
        signing.generate_signing_key(key_dir, now=NOW)
        self.signer = signing.load_active_signer(key_dir)
        self.trust_path = key_dir / signing.TRUST_BUNDLE
        self.trust = signing.load_trust_set(self.trust_path)


def build_bytes(
    keys: KeyRing,
    sources: Sequence[otap.EntrySource],
    *,
    gateway: str = "ZGW_FRONT",
    package_version: int = 7,
    expires_at: dt.datetime = LATER,
    options: otap.BuildOptions | None = None,
) -> bytes:
    """Build a package in memory and return its bytes."""
    buffer = io.BytesIO()
    otap.write_package(
        buffer,
        zonal_gateway_id=gateway,
        sources=sources,
        signer=keys.signer,
        package_version=package_version,
        expires_at=expires_at,
        created_at=NOW,
        options=options,
    )
    return buffer.getvalue()


def write_images(directory: Path, images: Sequence[bytes]) -> list[otap.EntrySource]:
    """One EntrySource per image, ECU ids ECU_001.., target versions 1.0.<n>."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = []
    for number, image in enumerate(images, start=1):
        path = directory / f"image-{number}.bin"
        path.write_bytes(image)
        sources.append(
            otap.EntrySource(
                ecu_id=f"ECU_{number:03d}",
                current_version="0.9.0",
                target_version=f"1.0.{number}",
                image_path=path,
            )
        )
    return sources


def raw_entry(
    data: bytes,
    *,
    image_size: int,
    image_sha256: bytes,
    ecu_id: bytes = b"ECU_001",
    current_version: bytes = b"1.0.0",
    target_version: bytes = b"2.0.0",
    delta_base_version: bytes = b"",
    compression: int = otap.COMPRESSION_ZSTD,
    delta_algorithm: int = 0,
    base_sha256: bytes = b"\0" * 32,
) -> tuple[dict[str, object], bytes]:
    """Entry fields as raw bytes (no validation), with the data they describe."""
    fields: dict[str, object] = {
        "ecu_id": ecu_id,
        "current_version": current_version,
        "target_version": target_version,
        "delta_base_version": delta_base_version,
        "compression": compression,
        "delta_algorithm": delta_algorithm,
        "image_size": image_size,
        "image_sha256": image_sha256,
        "base_sha256": base_sha256,
    }
    return fields, data


def assemble(
    keys: KeyRing,
    entries: Sequence[tuple[dict[str, object], bytes]],
    *,
    gateway: bytes = b"ZGW_FRONT",
    package_version: int = 7,
    expires_at: dt.datetime = LATER,
    created_at: dt.datetime = NOW,
) -> bytes:
    """A validly signed package around arbitrary entry bytes, as a hostile signer could make.

    The writer refuses what these tests feed the reader, so they are packed here by hand.
    """
    count = len(entries)
    offset = otap.data_offset_for(count)
    table = b""
    for fields, data in entries:
        table += otap.ENTRY.pack(
            fields["ecu_id"].ljust(16, b"\0"),
            fields["current_version"].ljust(64, b"\0"),
            fields["target_version"].ljust(64, b"\0"),
            fields["delta_base_version"].ljust(64, b"\0"),
            fields["compression"],
            fields["delta_algorithm"],
            b"\0" * 6,
            offset,
            len(data),
            fields["image_size"],
            fields["image_sha256"],
            hashlib.sha256(data).digest(),
            fields["base_sha256"],
            b"\0" * 16,
        )
        offset += len(data)
    header = otap.HEADER.pack(
        otap.MAGIC, 1, otap.HEADER_SIZE, otap.ENTRY_SIZE, count, 0, gateway.ljust(32, b"\0"), b""
    )
    manifest = otap.MANIFEST.pack(
        package_version,
        int(created_at.timestamp()),
        int(expires_at.timestamp()),
        offset,
        otap.data_offset_for(count),
        keys.signer.mldsa_key_id,
        keys.signer.ecdsa_key_id,
        b"",
    )
    signed = header + table + manifest
    mldsa_sig, ecdsa_sig = keys.signer.sign_manifest(signed, context=otap.MLDSA_CONTEXT)
    ecdsa_sig = low_s_signature(ecdsa_sig)
    signatures = otap.SIGNATURES.pack(
        len(mldsa_sig), mldsa_sig, len(ecdsa_sig), ecdsa_sig.ljust(72, b"\0"), b""
    )
    return signed + signatures + b"".join(data for _, data in entries)
