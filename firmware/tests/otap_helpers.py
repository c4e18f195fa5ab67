"""Builders shared by the OTAP format tests (no database needed)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from pathlib import Path

from firmware import otap, signing

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
