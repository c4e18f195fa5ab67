"""Building and signing Uptane metadata with python-tuf's Metadata API.

Django-free, shared by the server (online roles), the offline release tool (image repository
root and targets) and the tests. Both repositories use TUF's four top-level roles; Uptane's
additions travel in each target's "custom" object: the image repository names the hardware
an image runs on, the director names the ECU it is for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from uptane.keys import TOP_LEVEL_ROLES, hybrid_policy_errors

IMAGE_REPOSITORY = "image"
DIRECTOR_REPOSITORY = "director"
REPOSITORIES = (IMAGE_REPOSITORY, DIRECTOR_REPOSITORY)
# How long each role's signature stays good; short for the online roles so that a frozen
# repository shows within a day.
LIFETIME = {
    "root": dt.timedelta(days=365),
    "targets": dt.timedelta(days=90),
    "snapshot": dt.timedelta(days=7),
    "timestamp": dt.timedelta(days=1),
}
DIRECTOR_TARGETS_LIFETIME = dt.timedelta(days=7)
# Compact JSON: every byte goes over the vehicle's link.
_SERIALIZER = JSONSerializer(compact=True)


class MetadataPolicyError(ValueError):
    """Metadata that would break the hybrid rule or Uptane's structure."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def expiry(role: str, *, start: dt.datetime | None = None) -> dt.datetime:
    return (start or now()) + LIFETIME.get(role, LIFETIME["targets"])


def to_bytes(metadata: Metadata) -> bytes:
    return metadata.to_bytes(_SERIALIZER)


def check_hybrid_root(root: Root) -> None:
    """Refuse a root whose any role could be signed by one algorithm family alone."""
    problems = []
    for name in TOP_LEVEL_ROLES:
        role = root.roles[name]
        keys = [root.keys[keyid] for keyid in role.keyids]
        problems += [f"{name}: {error}" for error in hybrid_policy_errors(keys, role.threshold)]
    if problems:
        raise MetadataPolicyError("; ".join(problems))


def check_hybrid_delegations(targets: Targets) -> None:
    if not targets.delegations or not targets.delegations.roles:
        return
    problems = []
    for name, role in targets.delegations.roles.items():
        keys = [targets.delegations.keys[keyid] for keyid in role.keyids]
        problems += [f"{name}: {error}" for error in hybrid_policy_errors(keys, role.threshold)]
    if problems:
        raise MetadataPolicyError("; ".join(problems))


def new_root(
    role_keys: Mapping[str, Sequence[Key]],
    *,
    version: int = 1,
    thresholds: Mapping[str, int] | None = None,
    expires: dt.datetime | None = None,
    hybrid: bool = True,
) -> Metadata[Root]:
    """A root naming each top-level role's keys; the threshold defaults to all of them.

    `hybrid=False` only for the benchmark's single-algorithm baselines.
    """
    root = Root(version=version, expires=expires or expiry("root"), consistent_snapshot=False)
    for name in TOP_LEVEL_ROLES:
        root.roles[name] = Role([], threshold=1)
        for key in role_keys[name]:
            root.add_key(key, name)
        root.roles[name].threshold = (thresholds or {}).get(name, len(role_keys[name]))
    if hybrid:
        check_hybrid_root(root)
    return Metadata(root)


def image_target(
    path: str, *, length: int, sha256: str, ecu_type: str, hardware_ids: Iterable[str]
) -> TargetFile:
    """An image repository entry: what the image is and which hardware it runs on."""
    custom = {"ecu_type": ecu_type, "hardware_ids": sorted(hardware_ids)}
    return TargetFile(length, {"sha256": sha256}, path, {"custom": custom})


def director_target(path: str, *, length: int, sha256: str, ecus: Mapping[str, str]) -> TargetFile:
    """A director entry: install this image on these ECUs of this vehicle.

    `ecus` maps ECU id to hardware id. TUF keys targets by path, so one image for several
    ECUs (three ECMs of one type) is one entry naming them all.
    """
    custom = {
        "ecu_identifiers": {ecu: {"hardware_identifier": hw} for ecu, hw in sorted(ecus.items())}
    }
    return TargetFile(length, {"sha256": sha256}, path, {"custom": custom})


def directed_ecus(target: TargetFile) -> dict[str, str]:
    """ECU id -> hardware id of a director entry ({} when it names none, or malformed)."""
    custom = target.custom if isinstance(target.custom, dict) else {}
    named = custom.get("ecu_identifiers")
    if not isinstance(named, dict):
        return {}
    return {
        str(ecu): str(info.get("hardware_identifier", "")) if isinstance(info, dict) else ""
        for ecu, info in named.items()
    }


def new_targets(
    targets: Iterable[TargetFile],
    *,
    version: int,
    expires: dt.datetime | None = None,
    delegations: Delegations | None = None,
) -> Metadata[Targets]:
    signed = Targets(
        version=version,
        expires=expires or expiry("targets"),
        targets={t.path: t for t in targets},
        delegations=delegations,
    )
    check_hybrid_delegations(signed)
    return Metadata(signed)


def supplier_delegation(
    name: str, keys: Sequence[Key], *, paths: Sequence[str], threshold: int | None = None
) -> tuple[DelegatedRole, dict[str, Key]]:
    """A delegated role for a supplier who signs images under `paths` with its own keys."""
    role = DelegatedRole(
        name=name,
        keyids=[key.keyid for key in keys],
        threshold=threshold or len(keys),
        terminating=True,
        paths=list(paths),
    )
    return role, {key.keyid: key for key in keys}


def delegations_of(suppliers: Iterable[tuple[DelegatedRole, dict[str, Key]]]) -> Delegations:
    keys: dict[str, Key] = {}
    roles: dict[str, DelegatedRole] = {}
    for role, role_keys in suppliers:
        keys.update(role_keys)
        roles[role.name] = role
    return Delegations(keys=keys, roles=roles)


def new_snapshot(
    targets_versions: Mapping[str, int], *, version: int, expires: dt.datetime | None = None
) -> Metadata[Snapshot]:
    """Snapshot of the targets roles: "targets" and every delegated role, by version."""
    meta = {f"{name}.json": MetaFile(version=v) for name, v in targets_versions.items()}
    snapshot = Snapshot(version=version, expires=expires or expiry("snapshot"), meta=meta)
    return Metadata(snapshot)


def new_timestamp(
    snapshot_bytes: bytes,
    snapshot_version: int,
    *,
    version: int,
    expires: dt.datetime | None = None,
) -> Metadata[Timestamp]:
    """Timestamp naming the snapshot by version, length and hash (so it cannot be swapped)."""
    meta = MetaFile.from_data(snapshot_version, snapshot_bytes, ["sha256"])
    timestamp = Timestamp(
        version=version, expires=expires or expiry("timestamp"), snapshot_meta=meta
    )
    return Metadata(timestamp)


def sign(metadata: Metadata, signers: Iterable[Signer]) -> Metadata:
    """Replace the signatures with one from each signer."""
    metadata.signatures.clear()
    for signer in signers:
        metadata.sign(signer, append=True)
    return metadata
