"""The server's two Uptane repositories: online keys, uploaded offline metadata, the director.

The image repository's root and targets arrive signed by the release engineers' offline keys
(see uptane/release.py); the server checks them and signs only snapshot and timestamp. The
director signs each vehicle's targets from the versions its ECUs should run (set when a
campaign offers the vehicle an update) with the director's online keys.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, TargetFile, Targets

from core.api import DomainError, NotFoundError
from core.audit import record_event
from ecus.models import Ecu
from firmware.choices import FirmwareStatus
from firmware.models import Firmware
from uptane import keys as uptane_keys
from uptane import metadata as md
from uptane.choices import Repository
from uptane.models import OnlineKey, SignedMetadata
from vehicles.models import Vehicle

ONLINE_ROLES = {
    Repository.IMAGE: ("snapshot", "timestamp"),
    Repository.DIRECTOR: uptane_keys.TOP_LEVEL_ROLES,
}
# A vehicle's timestamp is renewed when less than this much of its life is left.
RENEW_BEFORE = dt.timedelta(hours=12)


@dataclass(frozen=True)
class MetadataFile:
    body: bytes
    sha256: str


def key_dir() -> Path:
    return Path(getattr(settings, "UPTANE_KEY_DIR", settings.VAR_DIR / "uptane"))


def target_path(firmware: Firmware) -> str:
    """The name both repositories give an image: ECU type code and version."""
    return f"{firmware.ecu_type.code}/{firmware.version}"


def hardware_id(ecu_type_code: str, hardware_version: str) -> str:
    return f"{ecu_type_code}/{hardware_version}"


# ---------------------------------------------------------------------------------------------
# Keys.


def _create_online_key(repository: str, role: str, algorithm: str) -> OnlineKey:
    signer = uptane_keys.generate_signer(algorithm)
    name = f"{repository}-{role}-{algorithm}-{signer.public_key.keyid[:16]}"
    uptane_keys.write_signer(signer, key_dir(), name)
    return OnlineKey.objects.create(
        repository=repository,
        role=role,
        keyid=signer.public_key.keyid,
        algorithm=algorithm,
        public_key=signer.public_key.to_dict(),
        private_key_file=name,
    )


@transaction.atomic(durable=True)
def create_online_keys(*, actor: Any) -> list[OnlineKey]:
    """Give every online role its hybrid key pair (once) and the director its first root."""
    created = []
    for repository, roles in ONLINE_ROLES.items():
        for role in roles:
            if OnlineKey.objects.filter(repository=repository, role=role, revoked_at=None).exists():
                continue
            for algorithm in uptane_keys.ROLE_ALGORITHMS[role]:
                created.append(_create_online_key(repository, role, algorithm))
    if created:
        record_event(
            action="uptane.online_keys_created",
            actor=actor,
            object_type="uptane",
            details={"keys": [f"{k.repository}/{k.role}/{k.algorithm}" for k in created]},
        )
    if not _latest(Repository.DIRECTOR, "root"):
        _store(_sign_director_root(version=1, previous=[]), Repository.DIRECTOR, "root")
    return created


def _active_keys(repository: str, role: str) -> list[OnlineKey]:
    return list(OnlineKey.objects.filter(repository=repository, role=role, revoked_at=None))


def _signers(repository: str, role: str) -> list[Signer]:
    return [
        uptane_keys.read_signer(key_dir(), key.private_key_file)
        for key in _active_keys(repository, role)
    ]


def online_public_keys() -> dict[str, dict[str, Any]]:
    """The image repository's online keys, for the release engineer to name in its root."""
    keys = OnlineKey.objects.filter(
        repository=Repository.IMAGE, role__in=ONLINE_ROLES[Repository.IMAGE], revoked_at=None
    )
    result: dict[str, dict[str, Any]] = {role: {} for role in ONLINE_ROLES[Repository.IMAGE]}
    for key in keys:
        result[key.role][key.keyid] = key.public_key
    if not all(result.values()):
        raise NotFoundError("the online keys do not exist yet: manage.py uptane init")
    return result


def _sign_director_root(*, version: int, previous: list[Signer]) -> Metadata[Root]:
    role_keys = {
        role: [
            uptane_keys.public_key_from_dict(k.keyid, k.public_key)
            for k in _active_keys(Repository.DIRECTOR, role)
        ]
        for role in uptane_keys.TOP_LEVEL_ROLES
    }
    root = md.new_root(role_keys, version=version)
    signers = {s.public_key.keyid: s for s in [*previous, *_signers(Repository.DIRECTOR, "root")]}
    return md.sign(root, signers.values())


@transaction.atomic(durable=True)
def rotate_director_key(*, role: str, actor: Any) -> Metadata[Root]:
    """Revoke a director role's keys, make new ones and publish a root that names them,
    signed by the old root keys as well so vehicles follow the rotation."""
    if role not in uptane_keys.TOP_LEVEL_ROLES:
        raise DomainError(f"not a director role: {role}", field="role")
    previous = _signers(Repository.DIRECTOR, "root")
    old = _active_keys(Repository.DIRECTOR, role)
    now = md.now()
    OnlineKey.objects.filter(pk__in=[k.pk for k in old]).update(revoked_at=now)
    for algorithm in uptane_keys.ROLE_ALGORITHMS[role]:
        _create_online_key(Repository.DIRECTOR, role, algorithm)
    current = _latest(Repository.DIRECTOR, "root")
    root = _sign_director_root(version=current.version + 1, previous=previous)
    _store(root, Repository.DIRECTOR, "root")
    record_event(
        action="uptane.director_key_rotated",
        actor=actor,
        object_type="uptane",
        details={
            "role": role,
            "revoked": [k.keyid for k in old],
            "root_version": root.signed.version,
        },
    )
    return root


# ---------------------------------------------------------------------------------------------
# Stored metadata.


def _latest(repository: str, role: str, vehicle: Vehicle | None = None) -> SignedMetadata | None:
    return (
        SignedMetadata.objects.filter(repository=repository, role=role, vehicle=vehicle)
        .order_by("-version")
        .first()
    )


def _store(
    metadata: Metadata, repository: str, role: str, vehicle: Vehicle | None = None
) -> SignedMetadata:
    body = md.to_bytes(metadata)
    return SignedMetadata.objects.create(
        repository=repository,
        role=role,
        vehicle=vehicle,
        version=metadata.signed.version,
        expires_at=metadata.signed.expires,
        body=body,
        sha256=hashlib.sha256(body).hexdigest(),
    )


def _parsed(row: SignedMetadata | None) -> Metadata | None:
    return Metadata.from_bytes(bytes(row.body)) if row else None


def metadata_file(repository: str, name: str, *, vehicle: Vehicle | None = None) -> MetadataFile:
    """The bytes served as `<name>.json`: "<N>.root", "timestamp", "snapshot", "targets" or a
    delegated role; director files other than root are the calling vehicle's."""
    if name.endswith(".root"):
        version = name.removesuffix(".root")
        if not version.isdigit():
            raise NotFoundError(f"no metadata {name}.json")
        row = SignedMetadata.objects.filter(
            repository=repository, role="root", vehicle=None, version=int(version)
        ).first()
    elif repository == Repository.DIRECTOR:
        if vehicle is None:
            raise NotFoundError("director metadata is per vehicle")
        if name == "timestamp":
            _renewing(refresh_director, vehicle)
        row = _latest(repository, name, vehicle)
    else:
        if name == "timestamp":
            _renewing(renew_image_timestamp)
        row = _latest(repository, name)
    if row is None:
        raise NotFoundError(f"no metadata {name}.json")
    return MetadataFile(bytes(row.body), row.sha256)


def _renewing(renew: Any, *args: Any) -> None:
    """Run a renewal that a concurrent request may have done first: the loser's new version
    collides with the winner's, and the winner's is as good."""
    with contextlib.suppress(IntegrityError):
        renew(*args)


def export_roots(directory: Path) -> list[Path]:
    """Write the current root of each repository, to provision vehicles with."""
    written = []
    directory.mkdir(parents=True, exist_ok=True)
    for repository in Repository:
        row = _latest(repository, "root")
        if row is None:
            raise NotFoundError(f"the {repository.label} has no root yet")
        path = directory / f"{repository.value}-root.json"
        path.write_bytes(bytes(row.body))
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# Image repository: offline root and targets, online snapshot and timestamp.


@transaction.atomic
def renew_image_timestamp() -> None:
    """Sign a new snapshot and timestamp when the current timestamp nears its expiry, so that
    vehicles do not take a quiet image repository for a frozen one."""
    row = _latest(Repository.IMAGE, "timestamp")
    if row is None or row.expires_at - md.now() > RENEW_BEFORE:
        return
    _publish_image_snapshot()
    record_event(
        action="uptane.image_timestamp_renewed",
        actor="system:uptane",
        object_type="uptane",
        details={"expired_at": row.expires_at.isoformat()},
    )


def _parse_upload(data: bytes, expected: type) -> Metadata:
    try:
        metadata = Metadata.from_bytes(data)
    except Exception as exc:  # the library raises several kinds for bad input
        raise DomainError(f"not TUF metadata: {exc}", field="metadata") from None
    if not isinstance(metadata.signed, expected):
        raise DomainError(f"expected {expected.type} metadata", field="metadata")
    if metadata.signed.is_expired(md.now()):
        raise DomainError("the metadata has already expired", field="metadata.expires")
    return metadata


def _verify(delegator: Any, role: str, metadata: Metadata, what: str) -> None:
    try:
        delegator.verify_delegate(role, metadata.signed_bytes, metadata.signatures)
    except UnsignedMetadataError as exc:
        raise DomainError(f"{what}: {exc}", field="signatures") from None


@transaction.atomic(durable=True)
def install_image_root(*, data: bytes, actor: Any) -> SignedMetadata:
    """Accept a root signed offline: the first one, or the next version signed by both the
    current root's threshold and its own (rotation, revocation, threshold change)."""
    root = _parse_upload(data, Root)
    try:
        md.check_hybrid_root(root.signed)
    except (md.MetadataPolicyError, uptane_keys.InvalidKeyError) as exc:
        raise DomainError(str(exc), field="roles") from None
    current = _parsed(_latest(Repository.IMAGE, "root"))
    expected_version = current.signed.version + 1 if current else 1
    if root.signed.version != expected_version:
        raise DomainError(f"the next root is version {expected_version}", field="version")
    if current:
        _verify(current.signed, "root", root, "not signed by the current root's keys")
    _verify(root.signed, "root", root, "not signed by its own root keys")
    online = online_public_keys()
    for role, role_keys in online.items():
        if set(root.signed.roles[role].keyids) != set(role_keys):
            raise DomainError(
                f"{role} must name the server's online {role} keys", field=f"roles.{role}"
            )
    row = _store(root, Repository.IMAGE, "root")
    record_event(
        action="uptane.image_root_installed",
        actor=actor,
        object_type="uptane",
        object_id=row.version,
        details={"sha256": row.sha256, "expires": row.expires_at.isoformat()},
    )
    return row


def _check_released_targets(targets: Targets) -> None:
    by_path = {target_path(f): f for f in Firmware.objects.select_related("ecu_type")}
    for path, target in targets.targets.items():
        firmware = by_path.get(path)
        if firmware is None:
            raise DomainError(f"no firmware {path} on the server", field=f"targets.{path}")
        if target.length != firmware.size or target.hashes.get("sha256") != firmware.sha256:
            raise DomainError(
                f"{path}: length or SHA-256 differ from the uploaded firmware",
                field=f"targets.{path}",
            )


@transaction.atomic(durable=True)
def install_image_targets(*, data: bytes, actor: Any, role: str = "targets") -> SignedMetadata:
    """Accept targets metadata signed offline (the release, or a supplier's delegated role),
    then sign a new snapshot and timestamp with the online keys."""
    metadata = _parse_upload(data, Targets)
    root = _parsed(_latest(Repository.IMAGE, "root"))
    if root is None:
        raise DomainError("install the image repository's root first", field="metadata")
    if role == "targets":
        delegator = root.signed
    else:
        top = _parsed(_latest(Repository.IMAGE, "targets"))
        delegations = top.signed.delegations if top else None
        if not delegations or not delegations.roles or role not in delegations.roles:
            raise DomainError(f"the targets role delegates nothing to {role}", field="role")
        delegator = top.signed
    _verify(delegator, role, metadata, f"not signed by the {role} keys")
    try:
        md.check_hybrid_delegations(metadata.signed)
    except (md.MetadataPolicyError, uptane_keys.InvalidKeyError) as exc:
        raise DomainError(str(exc), field="delegations") from None
    current = _latest(Repository.IMAGE, role)
    if current and metadata.signed.version <= current.version:
        raise DomainError(f"version must be above {current.version}", field="version")
    _check_released_targets(metadata.signed)
    row = _store(metadata, Repository.IMAGE, role)
    _publish_image_snapshot()
    record_event(
        action="uptane.image_targets_installed",
        actor=actor,
        object_type="uptane",
        object_id=f"{role}:{row.version}",
        details={"role": role, "targets": sorted(metadata.signed.targets), "sha256": row.sha256},
    )
    return row


def _targets_roles() -> dict[str, int]:
    versions = {}
    for row in SignedMetadata.objects.filter(repository=Repository.IMAGE, vehicle=None).exclude(
        role__in=["root", "snapshot", "timestamp"]
    ):
        versions[row.role] = max(versions.get(row.role, 0), row.version)
    return versions


def _publish_image_snapshot() -> None:
    snapshot_row = _latest(Repository.IMAGE, "snapshot")
    snapshot = md.new_snapshot(
        _targets_roles(), version=(snapshot_row.version if snapshot_row else 0) + 1
    )
    md.sign(snapshot, _signers(Repository.IMAGE, "snapshot"))
    snapshot_bytes = md.to_bytes(snapshot)
    _store(snapshot, Repository.IMAGE, "snapshot")
    timestamp_row = _latest(Repository.IMAGE, "timestamp")
    timestamp = md.new_timestamp(
        snapshot_bytes,
        snapshot.signed.version,
        version=(timestamp_row.version if timestamp_row else 0) + 1,
    )
    _store(
        md.sign(timestamp, _signers(Repository.IMAGE, "timestamp")), Repository.IMAGE, "timestamp"
    )


def targets_draft() -> dict[str, Any]:
    """Unsigned targets metadata listing every available firmware, for offline signing."""
    current = _parsed(_latest(Repository.IMAGE, "targets"))
    releases = Firmware.objects.filter(status=FirmwareStatus.AVAILABLE).select_related("ecu_type")
    targets = [
        md.image_target(
            target_path(f),
            length=f.size,
            sha256=f.sha256,
            ecu_type=f.ecu_type.code,
            hardware_ids=[
                hardware_id(f.ecu_type.code, c.hardware_version) for c in f.compatibilities.all()
            ],
        )
        for f in releases.prefetch_related("compatibilities")
    ]
    draft = md.new_targets(
        targets,
        version=(current.signed.version if current else 0) + 1,
        delegations=current.signed.delegations if current else None,
    )
    return draft.signed.to_dict()


def image_repository_ready() -> bool:
    """Whether a release engineer has installed the image repository's root."""
    return SignedMetadata.objects.filter(repository=Repository.IMAGE, role="root").exists()


def _released_targets() -> dict[str, TargetFile]:
    released: dict[str, TargetFile] = {}
    for role in _targets_roles():
        metadata = _parsed(_latest(Repository.IMAGE, role))
        if metadata is None:
            continue
        for path, target in metadata.signed.targets.items():
            # The top-level role wins over a delegation for the same path, as clients see it.
            if role == "targets" or path not in released:
                released[path] = target
    return released


def unreleased_firmware(releases: list[Firmware]) -> list[Firmware]:
    """The firmware among `releases` that the offline-signed image repository does not name
    with the same length and hash (none while the image repository is not set up)."""
    if not image_repository_ready():
        return []
    released = _released_targets()
    missing = []
    for firmware in releases:
        target = released.get(target_path(firmware))
        if (
            target is None
            or target.length != firmware.size
            or target.hashes.get("sha256") != firmware.sha256
        ):
            missing.append(firmware)
    return missing


# ---------------------------------------------------------------------------------------------
# Director.


def _director_targets_for(vehicle: Vehicle) -> list[TargetFile]:
    ecus = [
        ecu
        for ecu in Ecu.objects.filter(vehicle=vehicle).select_related("ecu_type")
        if ecu.target_sw_version and ecu.target_sw_version != ecu.sw_version
    ]
    firmware = {
        (f.ecu_type_id, f.version): f
        for f in Firmware.objects.filter(
            ecu_type_id__in={e.ecu_type_id for e in ecus},
            version__in={e.target_sw_version for e in ecus},
        ).select_related("ecu_type")
    }
    directed: dict[int, dict[str, str]] = {}
    releases: dict[int, Firmware] = {}
    for ecu in ecus:
        release = firmware.get((ecu.ecu_type_id, ecu.target_sw_version))
        if release is not None:
            releases[release.pk] = release
            directed.setdefault(release.pk, {})[ecu.ecu_id] = hardware_id(
                ecu.ecu_type.code, ecu.hardware_version
            )
    return [
        md.director_target(
            target_path(releases[pk]),
            length=releases[pk].size,
            sha256=releases[pk].sha256,
            ecus=ecus_of_release,
        )
        for pk, ecus_of_release in directed.items()
    ]


@transaction.atomic
def refresh_director(vehicle: Vehicle) -> None:
    """Sign new director metadata for the vehicle when what its ECUs should run changed or
    its timestamp is about to expire."""
    Vehicle.objects.select_for_update().filter(pk=vehicle.pk).first()
    wanted = {t.path: t.to_dict() for t in _director_targets_for(vehicle)}
    current = _parsed(_latest(Repository.DIRECTOR, "targets", vehicle))
    changed = (
        current is None
        or {path: t.to_dict() for path, t in current.signed.targets.items()} != wanted
    )
    timestamp_row = _latest(Repository.DIRECTOR, "timestamp", vehicle)
    if not changed and timestamp_row and timestamp_row.expires_at - md.now() > RENEW_BEFORE:
        return
    if changed:
        version = (current.signed.version if current else 0) + 1
        targets = md.new_targets(
            [TargetFile.from_dict(dict(t), path) for path, t in wanted.items()],
            version=version,
            expires=md.now() + md.DIRECTOR_TARGETS_LIFETIME,
        )
        _store(
            md.sign(targets, _signers(Repository.DIRECTOR, "targets")),
            Repository.DIRECTOR,
            "targets",
            vehicle,
        )
        current = targets
    _publish_director_snapshot(vehicle, current.signed.version)
    record_event(
        action="uptane.director_signed",
        actor="system:director",
        vehicle_vin=vehicle.vin,
        object_type="uptane",
        details={"targets": sorted(wanted), "targets_version": current.signed.version},
    )


def _publish_director_snapshot(vehicle: Vehicle, targets_version: int) -> None:
    snapshot_row = _latest(Repository.DIRECTOR, "snapshot", vehicle)
    snapshot = md.new_snapshot(
        {"targets": targets_version}, version=(snapshot_row.version if snapshot_row else 0) + 1
    )
    md.sign(snapshot, _signers(Repository.DIRECTOR, "snapshot"))
    _store(snapshot, Repository.DIRECTOR, "snapshot", vehicle)
    timestamp_row = _latest(Repository.DIRECTOR, "timestamp", vehicle)
    timestamp = md.new_timestamp(
        md.to_bytes(snapshot),
        snapshot.signed.version,
        version=(timestamp_row.version if timestamp_row else 0) + 1,
    )
    md.sign(timestamp, _signers(Repository.DIRECTOR, "timestamp"))
    _store(timestamp, Repository.DIRECTOR, "timestamp", vehicle)
