"""An Uptane repository held in memory: role signers, current metadata, published files.

Django-free. The server keeps its repositories in the database (uptane.services); this one
serves the offline release tool's dry runs, the attack tests and the metadata benchmark,
which need every role's keys in one place (as only an attacker or a test ever has them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root, TargetFile

from uptane import metadata as md
from uptane.keys import TOP_LEVEL_ROLES, generate_role_signers

KeyFactory = Callable[[str], list[Signer]]


@dataclass
class Repository:
    """One repository (image or director) with all its signers."""

    base_url: str
    signers: dict[str, list[Signer]]
    files: dict[str, bytes] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    root: Metadata[Root] | None = None
    delegated_signers: dict[str, list[Signer]] = field(default_factory=dict)
    hybrid: bool = True

    @classmethod
    def create(
        cls, base_url: str, *, key_factory: KeyFactory = generate_role_signers, hybrid: bool = True
    ) -> Repository:
        repo = cls(base_url, {role: key_factory(role) for role in TOP_LEVEL_ROLES}, hybrid=hybrid)
        repo.publish_root()
        return repo

    def url(self, name: str) -> str:
        return f"{self.base_url}{name}"

    def _bump(self, role: str) -> int:
        self.versions[role] = self.versions.get(role, 0) + 1
        return self.versions[role]

    def publish_root(
        self,
        *,
        signed_by: Sequence[Signer] | None = None,
        thresholds: Mapping[str, int] | None = None,
        expires: dt.datetime | None = None,
    ) -> bytes:
        """A new root version from the current signers, signed by the new root keys and
        `signed_by` (the previous root's keys, when rotating)."""
        role_keys = {role: [s.public_key for s in self.signers[role]] for role in TOP_LEVEL_ROLES}
        root = md.new_root(
            role_keys,
            version=self._bump("root"),
            thresholds=thresholds,
            expires=expires,
            hybrid=self.hybrid,
        )
        signers = {id(s): s for s in [*(signed_by or []), *self.signers["root"]]}
        data = md.to_bytes(md.sign(root, signers.values()))
        self.root = root
        self.files[self.url(f"{root.signed.version}.root.json")] = data
        return data

    def root_bytes(self, version: int = 1) -> bytes:
        return self.files[self.url(f"{version}.root.json")]

    def publish_targets(
        self,
        targets: Iterable[TargetFile],
        *,
        role: str = "targets",
        delegations: md.Delegations | None = None,
        expires: dt.datetime | None = None,
        signers: Sequence[Signer] | None = None,
    ) -> bytes:
        metadata = md.new_targets(
            targets, version=self._bump(role), expires=expires, delegations=delegations
        )
        own = self.signers.get(role) or self.delegated_signers[role]
        data = md.to_bytes(md.sign(metadata, signers if signers is not None else own))
        self.files[self.url(f"{role}.json")] = data
        return data

    def publish_snapshot_and_timestamp(
        self,
        *,
        snapshot_expires: dt.datetime | None = None,
        timestamp_expires: dt.datetime | None = None,
    ) -> None:
        roles = {"targets", *self.delegated_signers}
        versions = {role: self.versions[role] for role in roles if role in self.versions}
        snapshot = md.new_snapshot(
            versions, version=self._bump("snapshot"), expires=snapshot_expires
        )
        snapshot_bytes = md.to_bytes(md.sign(snapshot, self.signers["snapshot"]))
        self.files[self.url("snapshot.json")] = snapshot_bytes
        timestamp = md.new_timestamp(
            snapshot_bytes,
            snapshot.signed.version,
            version=self._bump("timestamp"),
            expires=timestamp_expires,
        )
        self.files[self.url("timestamp.json")] = md.to_bytes(
            md.sign(timestamp, self.signers["timestamp"])
        )

    def snapshot_files(self) -> dict[str, bytes]:
        """The files as they are now (to replay them later)."""
        return dict(self.files)
