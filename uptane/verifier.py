"""What a vehicle checks before it installs anything: Uptane full and partial verification.

Django-free, so that the reference vehicle and any gateway-side port can use it as it is.
Each repository is followed with python-tuf's client workflow (``tuf.ngclient.Updater``):
root rotation chain, timestamp, snapshot and targets, with thresholds, expiry, rollback
(versions never go down), snapshot consistency and bounded downloads. On top of it come
Uptane's checks: the hybrid key rule on both roots, and for every image the director names,
an ECU of this vehicle, that ECU's hardware, and the same length and hashes in the image
repository. Trusted metadata is kept in ``state_dir`` and survives restarts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuf.api.exceptions import DownloadError, RepositoryError
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from uptane.keys import InvalidKeyError
from uptane.metadata import (
    MetadataPolicyError,
    check_hybrid_delegations,
    check_hybrid_root,
    directed_ecus,
    now,
)

# Bounds on what a vehicle downloads per file: a repository that sends more is refused
# (endless-data attack). Sized for hybrid signatures: an ML-DSA-65 signature is 3,309 bytes,
# 6,618 as hex, an ML-DSA-87 public key 2,592 bytes.
VEHICLE_LIMITS = UpdaterConfig(
    root_max_length=256 * 1024,
    timestamp_max_length=16 * 1024,
    snapshot_max_length=256 * 1024,
    targets_max_length=2 * 1024 * 1024,
)


class VerificationError(ValueError):
    """The metadata or an image failed a check; nothing from this round may be installed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ApprovedImage:
    """An image both repositories agree this ECU should run."""

    ecu_id: str
    hardware_id: str
    path: str
    length: int
    sha256: str


class MemoryFetcher(FetcherInterface):
    """Serves metadata from a mapping of URL to bytes (a primary forwarding to a gateway,
    tests, benchmarks); a missing URL is a 404."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = dict(files)

    def _fetch(self, url: str) -> Iterator[bytes]:
        from tuf.api.exceptions import DownloadHTTPError

        if url not in self.files:
            raise DownloadHTTPError(f"{url} not found", 404)
        return iter([self.files[url]])


def _hash_of(target: TargetFile) -> str:
    return target.hashes.get("sha256", "")


class PrimaryVerifier:
    """Full verification, as the vehicle's primary (its VMG) does it."""

    def __init__(
        self,
        *,
        state_dir: Path,
        image_url: str,
        director_url: str,
        fetcher: FetcherInterface,
        ecus: Mapping[str, str],
        image_root: bytes | None = None,
        director_root: bytes | None = None,
        require_hybrid: bool = True,
    ) -> None:
        """`ecus` maps each ECU id of this vehicle to its hardware id; the roots are needed
        only the first time, afterwards the persisted trusted roots are used.
        `require_hybrid=False` only for the benchmark's single-algorithm baselines."""
        self.require_hybrid = require_hybrid
        self.state_dir = Path(state_dir)
        self.ecus = dict(ecus)
        self._repositories = {
            "director": (director_url, director_root),
            "image": (image_url, image_root),
        }
        self.fetcher = fetcher

    def _updater(self, name: str) -> Updater:
        url, bootstrap = self._repositories[name]
        directory = self.state_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "root.json").exists():
            bootstrap = None
        elif bootstrap is None:
            raise VerificationError("no_trusted_root", f"{name} repository has no trusted root")
        return Updater(
            str(directory),
            url,
            fetcher=self.fetcher,
            config=VEHICLE_LIMITS,
            bootstrap=bootstrap,
        )

    def _refresh(self, name: str) -> Updater:
        try:
            updater = self._updater(name)
            updater.refresh()
        except (RepositoryError, DownloadError) as exc:
            raise VerificationError(f"{name}_{type(exc).__name__}", str(exc)) from exc
        try:
            if self.require_hybrid:
                check_hybrid_root(self._trusted(name, Root))
                # Supplier delegations obey the same rule as the roles of the root.
                check_hybrid_delegations(self._trusted(name, Targets))
        except (MetadataPolicyError, InvalidKeyError) as exc:
            raise VerificationError(f"{name}_not_hybrid", str(exc)) from exc
        return updater

    def _trusted(self, name: str, role: type) -> Root | Targets:
        # Written by the updater only after the metadata passed every check.
        data = (self.state_dir / name / f"{role.type}.json").read_bytes()
        return Metadata.from_bytes(data).signed

    def refresh(self) -> list[ApprovedImage]:
        """Update both repositories and return the images to install, or raise."""
        self._refresh("director")
        image = self._refresh("image")
        director_targets = self._trusted("director", Targets)
        approved = []
        seen_ecus: set[str] = set()
        for path, target in sorted(director_targets.targets.items()):
            directed = directed_ecus(target)
            if not directed:
                raise VerificationError("no_ecu", f"{path} names no ECU")
            for ecu_id, hardware_id in sorted(directed.items()):
                self._check_ecu(path, ecu_id, hardware_id, seen_ecus)
            released = self._check_release(path, target, image, set(directed.values()))
            approved += [
                ApprovedImage(ecu_id, hardware_id, path, released.length, _hash_of(released))
                for ecu_id, hardware_id in sorted(directed.items())
            ]
        return approved

    def _check_ecu(self, path: str, ecu_id: str, hardware_id: str, seen_ecus: set[str]) -> None:
        if ecu_id not in self.ecus:
            raise VerificationError("unknown_ecu", f"{path} is for ECU {ecu_id!r}, not one of ours")
        if ecu_id in seen_ecus:
            raise VerificationError("two_images_for_one_ecu", f"ECU {ecu_id} named twice")
        seen_ecus.add(ecu_id)
        if hardware_id != self.ecus[ecu_id]:
            raise VerificationError(
                "wrong_hardware",
                f"{path} is for hardware {hardware_id!r}, ECU {ecu_id} is {self.ecus[ecu_id]!r}",
            )

    def _check_release(
        self, path: str, target: TargetFile, image: Updater, hardware: set[str]
    ) -> TargetFile:
        try:
            released = image.get_targetinfo(path)
        except (RepositoryError, DownloadError) as exc:
            raise VerificationError(f"image_{type(exc).__name__}", str(exc)) from exc
        if released is None:
            raise VerificationError("not_in_image_repository", f"{path} is not a signed release")
        if released.length != target.length or _hash_of(released) != _hash_of(target):
            raise VerificationError(
                "image_mismatch", f"{path}: director and image repository disagree on the image"
            )
        if not _hash_of(target):
            raise VerificationError("no_sha256", f"{path} carries no SHA-256")
        custom = released.custom if isinstance(released.custom, dict) else {}
        unreleased = hardware - set(custom.get("hardware_ids", []))
        if unreleased:
            raise VerificationError(
                "wrong_hardware", f"{path} is not released for hardware {sorted(unreleased)}"
            )
        return released


def check_packages(approved: Iterable[ApprovedImage], packages: Iterable[Any]) -> None:
    """Every image in the OTAP packages (the transport) is one both repositories approved for
    that ECU, byte for byte: same length and SHA-256 of the installed image."""
    by_ecu = {image.ecu_id: image for image in approved}
    for package in packages:
        for entry in package.entries:
            image = by_ecu.get(entry.ecu_id)
            if image is None:
                raise VerificationError(
                    "not_directed", f"the package updates {entry.ecu_id}, the director does not"
                )
            if entry.image_sha256.hex() != image.sha256 or entry.image_size != image.length:
                raise VerificationError(
                    "package_mismatch",
                    f"{entry.ecu_id}: the package's image is not {image.path} of the metadata",
                )


def verify_image(image: ApprovedImage, data: bytes) -> None:
    """The downloaded bytes are the image both repositories named."""
    if len(data) != image.length:
        raise VerificationError(
            "image_length", f"{image.path}: {len(data)} bytes, metadata says {image.length}"
        )
    if hashlib.sha256(data).hexdigest() != image.sha256:
        raise VerificationError("image_hash", f"{image.path}: SHA-256 differs from the metadata")


class PartialVerifier:
    """Partial verification for a zonal gateway or a small ECU: the director's targets only,
    against the director root it trusts, never accepting an older version than it last saw."""

    def __init__(self, *, state_file: Path, director_root: bytes, ecu_id: str, hardware_id: str):
        self.state_file = Path(state_file)
        self.root = Metadata[Root].from_bytes(director_root).signed
        self.ecu_id = ecu_id
        self.hardware_id = hardware_id

    def _last_version(self) -> int:
        if not self.state_file.exists():
            return 0
        return int(json.loads(self.state_file.read_text())["director_targets_version"])

    def verify(self, director_targets: bytes) -> ApprovedImage | None:
        """The image this ECU should install, None if the director names none for it."""
        try:
            metadata = Metadata[Targets].from_bytes(director_targets)
        except Exception as exc:  # any decoding failure is a refusal, not a crash
            raise VerificationError("malformed", str(exc)) from exc
        if not isinstance(metadata.signed, Targets):
            raise VerificationError("malformed", "not targets metadata")
        try:
            self.root.verify_delegate("targets", metadata.signed_bytes, metadata.signatures)
        except Exception as exc:
            raise VerificationError("director_targets_unsigned", str(exc)) from exc
        targets = metadata.signed
        if targets.is_expired(now()):
            raise VerificationError("expired", f"director targets expired {targets.expires}")
        if targets.version < self._last_version():
            raise VerificationError(
                "rollback", f"version {targets.version} < {self._last_version()} seen before"
            )
        approved = self._image_for_us(targets)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({"director_targets_version": targets.version}))
        return approved

    def _image_for_us(self, targets: Targets) -> ApprovedImage | None:
        for path, target in targets.targets.items():
            directed = directed_ecus(target)
            if self.ecu_id not in directed:
                continue
            if directed[self.ecu_id] != self.hardware_id:
                raise VerificationError("wrong_hardware", f"{path} is not for our hardware")
            return ApprovedImage(
                self.ecu_id, self.hardware_id, path, target.length, _hash_of(target)
            )
        return None
