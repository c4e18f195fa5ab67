"""Offline release signing for the image repository, on the release engineer's machine.

Needs no Django and no server access: keys stay in files on this machine (PKCS#8 PEM, owner-
only). The server hands out what is to be signed (its online public keys, and an unsigned
targets draft listing the uploaded firmware) and takes back the signed metadata through the
operator API.

    python -m uptane.release keygen --out keys/ --role root --role targets
    python -m uptane.release root --keys keys/ --online online-keys.json --out 1.root.json
    python -m uptane.release root --keys new-keys/ --previous-keys keys/ --version 2 ...
    python -m uptane.release sign --keys keys/ --draft draft.json --out targets.json \
        [--delegate supplier-acme:BCM/*:acme-public-keys/]
    python -m uptane.release sign --keys acme-keys/ --role supplier-acme --draft ... --out ...
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import Metadata, Targets

from uptane import keys
from uptane import metadata as md

OFFLINE_ROLES = ("root", "targets")


class ReleaseError(Exception):
    """A one-line reason the tool refuses to sign."""


def _role_key_names(directory: Path, role: str) -> list[str]:
    names = sorted(p.name.removesuffix(".pub.json") for p in directory.glob(f"{role}-*.pub.json"))
    return [n for n in names if n.removeprefix(f"{role}-").split("-", 1)[0] in ("ecdsa", "ml")]


def role_public_keys(directory: Path, role: str) -> list[Key]:
    names = _role_key_names(directory, role)
    if not names:
        raise ReleaseError(f"no {role} keys in {directory}")
    return [keys.read_public_key(directory / f"{name}.pub.json") for name in names]


def role_signers(directory: Path, role: str) -> list[Signer]:
    names = _role_key_names(directory, role)
    if not names:
        raise ReleaseError(f"no {role} private keys in {directory}")
    return [keys.read_signer(directory, name) for name in names]


def keygen(out: Path, roles: Sequence[str], suffix: str = "") -> list[Path]:
    written = []
    for role in roles:
        for signer in keys.generate_role_signers(role):
            algorithm = keys.algorithm_of(signer.public_key)
            written.append(keys.write_signer(signer, out, f"{role}-{algorithm}{suffix}"))
    return written


def _online_keys(path: Path) -> dict[str, list[Key]]:
    data = json.loads(path.read_text())
    online = {}
    for role in ("snapshot", "timestamp"):
        if role not in data or not isinstance(data[role], dict):
            raise ReleaseError(f"{path.name}: no {role} keys")
        online[role] = [keys.public_key_from_dict(kid, key) for kid, key in data[role].items()]
    return online


def build_root(
    *,
    key_dir: Path,
    online: Path,
    version: int,
    previous_key_dir: Path | None,
    thresholds: dict[str, int],
    expires: dt.datetime,
) -> Metadata:
    role_keys = {role: role_public_keys(key_dir, role) for role in OFFLINE_ROLES}
    role_keys.update(_online_keys(online))
    try:
        root = md.new_root(role_keys, version=version, thresholds=thresholds, expires=expires)
    except md.MetadataPolicyError as exc:
        raise ReleaseError(f"root would not be hybrid: {exc}") from None
    signers = role_signers(key_dir, "root")
    if previous_key_dir is not None:
        # The previous root's keys vouch for the new root, so vehicles follow the rotation.
        signers = role_signers(previous_key_dir, "root") + signers
    return md.sign(root, {s.public_key.keyid: s for s in signers}.values())


def _delegation(spec: str) -> tuple:
    try:
        name, patterns, key_dir = spec.split(":", 2)
    except ValueError:
        raise ReleaseError(f"--delegate {spec!r}: use NAME:PATTERN[,PATTERN]:KEYDIR") from None
    return md.supplier_delegation(
        name, role_public_keys(Path(key_dir), name), paths=patterns.split(",")
    )


def sign_targets(
    *, key_dir: Path, draft: Path, role: str, delegations: Sequence[str]
) -> Metadata[Targets]:
    try:
        signed = Targets.from_dict(json.loads(draft.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ReleaseError(f"{draft.name} is not targets metadata: {exc}") from None
    if delegations:
        signed.delegations = md.delegations_of(_delegation(spec) for spec in delegations)
    try:
        md.check_hybrid_delegations(signed)
    except md.MetadataPolicyError as exc:
        raise ReleaseError(f"delegations would not be hybrid: {exc}") from None
    return md.sign(Metadata(signed), role_signers(key_dir, role))


def _thresholds(values: Sequence[str]) -> dict[str, int]:
    result = {}
    for value in values:
        role, _, number = value.partition("=")
        if not number.isdigit():
            raise ReleaseError(f"--threshold {value!r}: use ROLE=N")
        result[role] = int(number)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m uptane.release", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("keygen", help="new offline hybrid keys (ECDSA-P256 + ML-DSA)")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--role", action="append", required=True)
    gen.add_argument("--suffix", default="", help="to add a second key pair to a role")
    root = commands.add_parser("root", help="build and sign the image repository's root")
    root.add_argument("--keys", type=Path, required=True)
    root.add_argument("--online", type=Path, required=True, help="the server's online keys")
    root.add_argument("--out", type=Path, required=True)
    root.add_argument("--version", type=int, default=1)
    root.add_argument("--previous-keys", type=Path)
    root.add_argument("--threshold", action="append", default=[], help="ROLE=N")
    root.add_argument("--expires-days", type=int, default=365)
    sign = commands.add_parser("sign", help="sign a targets draft from the server")
    sign.add_argument("--keys", type=Path, required=True)
    sign.add_argument("--draft", type=Path, required=True)
    sign.add_argument("--out", type=Path, required=True)
    sign.add_argument("--role", default="targets")
    sign.add_argument("--delegate", action="append", default=[], help="NAME:PATTERNS:KEYDIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "keygen":
            written = keygen(args.out, args.role, args.suffix)
            print(f"wrote {len(written)} private keys to {args.out}")
            return 0
        if args.command == "root":
            metadata = build_root(
                key_dir=args.keys,
                online=args.online,
                version=args.version,
                previous_key_dir=args.previous_keys,
                thresholds=_thresholds(args.threshold),
                expires=md.now() + dt.timedelta(days=args.expires_days),
            )
        else:
            metadata = sign_targets(
                key_dir=args.keys, draft=args.draft, role=args.role, delegations=args.delegate
            )
    except (ReleaseError, keys.InvalidKeyError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.write_bytes(md.to_bytes(metadata))
    signed = metadata.signed
    print(f"signed {signed.type} v{signed.version} with {len(metadata.signatures)} keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
