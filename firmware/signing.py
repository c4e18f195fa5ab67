"""Hybrid package signing keys (ML-DSA-65 + ECDSA-P256): generate, rotate, list, trust.

Layout under the key directory (settings.SIGNING_KEY_DIR on the server)::

    <key name>/mldsa65.key.pem      private, mode 0600
    <key name>/ecdsa-p256.key.pem   private, mode 0600
    <key name>/mldsa65.pub.pem
    <key name>/ecdsa-p256.pub.pem
    <key name>/meta.json            {"name", "created_at", "status", key ids}
    trust.pem                       every non-revoked public key: what vehicles trust

No Django imports: the vehicle-side verifier loads trust sets with this module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa

MLDSA_PRIVATE = "mldsa65.key.pem"
ECDSA_PRIVATE = "ecdsa-p256.key.pem"
MLDSA_PUBLIC = "mldsa65.pub.pem"
ECDSA_PUBLIC = "ecdsa-p256.pub.pem"
META = "meta.json"
TRUST_BUNDLE = "trust.pem"

STATUS_ACTIVE = "active"
STATUS_RETIRED = "retired"
STATUS_REVOKED = "revoked"

KEY_NAME_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")
_PEM_BLOCK_RE = re.compile(
    rb"-----BEGIN PUBLIC KEY-----\r?\n.+?-----END PUBLIC KEY-----", re.DOTALL
)


class SigningError(Exception):
    """Key management or signature verification failed."""


def key_id(public_key: mldsa.MLDSA65PublicKey | ec.EllipticCurvePublicKey) -> bytes:
    """16-byte key id: the first half of SHA-256 over the SubjectPublicKeyInfo DER."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()[:16]


def _public_pem(public_key: mldsa.MLDSA65PublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class SigningKeyInfo:
    """Public facts about one hybrid signing key pair."""

    name: str
    created_at: dt.datetime
    status: str
    mldsa_key_id: str
    ecdsa_key_id: str
    path: Path


class HybridSigner:
    """Private halves of a hybrid key; signs OTAP manifests (see firmware.otap.Signer)."""

    def __init__(
        self, name: str, mldsa_key: mldsa.MLDSA65PrivateKey, ecdsa_key: ec.EllipticCurvePrivateKey
    ) -> None:
        if not isinstance(ecdsa_key.curve, ec.SECP256R1):
            raise SigningError("ECDSA key must be on P-256")
        self.name = name
        self._mldsa = mldsa_key
        self._ecdsa = ecdsa_key
        self.mldsa_key_id = key_id(mldsa_key.public_key())
        self.ecdsa_key_id = key_id(ecdsa_key.public_key())

    def sign_manifest(self, message: bytes, *, context: bytes) -> tuple[bytes, bytes]:
        """Return (ML-DSA-65 signature, ECDSA-P256/SHA-256 DER signature)."""
        mldsa_sig = self._mldsa.sign(message, context)
        ecdsa_sig = self._ecdsa.sign(context + b"\0" + message, ec.ECDSA(hashes.SHA256()))
        return mldsa_sig, ecdsa_sig


class TrustSet:
    """Public keys a verifier accepts; both signatures of a manifest must check out."""

    def __init__(
        self,
        mldsa_keys: Iterable[mldsa.MLDSA65PublicKey] = (),
        ecdsa_keys: Iterable[ec.EllipticCurvePublicKey] = (),
    ) -> None:
        self.mldsa = {key_id(k): k for k in mldsa_keys}
        self.ecdsa = {key_id(k): k for k in ecdsa_keys}

    def __len__(self) -> int:
        return len(self.mldsa) + len(self.ecdsa)

    def verify_manifest(
        self,
        message: bytes,
        *,
        context: bytes,
        mldsa_key_id: bytes,
        mldsa_signature: bytes,
        ecdsa_key_id: bytes,
        ecdsa_signature: bytes,
    ) -> None:
        """Raise SigningError unless both signatures verify under trusted keys."""
        from firmware.otap import OtapError

        mldsa_key = self.mldsa.get(mldsa_key_id)
        if mldsa_key is None:
            raise OtapError(f"ML-DSA-65 key {mldsa_key_id.hex()} is not trusted")
        ecdsa_key = self.ecdsa.get(ecdsa_key_id)
        if ecdsa_key is None:
            raise OtapError(f"ECDSA-P256 key {ecdsa_key_id.hex()} is not trusted")
        try:
            mldsa_key.verify(mldsa_signature, message, context)
        except InvalidSignature:
            raise OtapError("ML-DSA-65 signature does not verify") from None
        try:
            ecdsa_key.verify(ecdsa_signature, context + b"\0" + message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise OtapError("ECDSA-P256 signature does not verify") from None


def _write_private(path: Path, data: bytes) -> None:
    # Create with 0600 from the start: a chmod after writing leaves a window where the key
    # is readable under the process umask.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _read_meta(path: Path) -> dict[str, str]:
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError) as exc:
        raise SigningError(f"{path.name}: unreadable {META}: {exc}") from None
    if not isinstance(meta, dict):
        raise SigningError(f"{path.name}: {META} is not an object")
    return meta


def _write_meta(path: Path, meta: dict[str, str]) -> None:
    tmp = path / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(path / META)


def _info(path: Path) -> SigningKeyInfo:
    meta = _read_meta(path)
    try:
        return SigningKeyInfo(
            name=meta["name"],
            created_at=dt.datetime.fromisoformat(meta["created_at"]),
            status=meta["status"],
            mldsa_key_id=meta["mldsa_key_id"],
            ecdsa_key_id=meta["ecdsa_key_id"],
            path=path,
        )
    except (KeyError, ValueError) as exc:
        raise SigningError(f"{path.name}: bad {META}: {exc}") from None


def list_signing_keys(key_dir: Path) -> list[SigningKeyInfo]:
    """Every key pair under key_dir, oldest first."""
    if not key_dir.is_dir():
        return []
    infos = [_info(p) for p in key_dir.iterdir() if p.is_dir() and (p / META).exists()]
    return sorted(infos, key=lambda info: (info.created_at, info.name))


def _new_key_name(key_dir: Path, now: dt.datetime) -> str:
    base = now.strftime("%Y%m%dT%H%M%SZ")
    name, n = base, 1
    while (key_dir / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _create_key(
    key_dir: Path, *, status: str, now: dt.datetime, name: str | None
) -> SigningKeyInfo:
    key_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(key_dir, 0o700)
    name = name or _new_key_name(key_dir, now)
    if not KEY_NAME_RE.match(name):
        raise SigningError(f"key name {name!r} is not allowed")
    path = key_dir / name
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        raise SigningError(f"key {name!r} already exists") from None
    mldsa_key = mldsa.MLDSA65PrivateKey.generate()
    ecdsa_key = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = serialization.PrivateFormat.PKCS8
    pem = serialization.Encoding.PEM
    none = serialization.NoEncryption()
    _write_private(path / MLDSA_PRIVATE, mldsa_key.private_bytes(pem, pkcs8, none))
    _write_private(path / ECDSA_PRIVATE, ecdsa_key.private_bytes(pem, pkcs8, none))
    (path / MLDSA_PUBLIC).write_bytes(_public_pem(mldsa_key.public_key()))
    (path / ECDSA_PUBLIC).write_bytes(_public_pem(ecdsa_key.public_key()))
    _write_meta(
        path,
        {
            "name": name,
            "created_at": now.isoformat(),
            "status": status,
            "mldsa_key_id": key_id(mldsa_key.public_key()).hex(),
            "ecdsa_key_id": key_id(ecdsa_key.public_key()).hex(),
        },
    )
    return _info(path)


def generate_signing_key(
    key_dir: Path, *, name: str | None = None, now: dt.datetime | None = None
) -> SigningKeyInfo:
    """Create the first active key pair; refuses when an active one exists (use rotate)."""
    if any(k.status == STATUS_ACTIVE for k in list_signing_keys(key_dir)):
        raise SigningError("an active signing key exists; rotate it instead")
    info = _create_key(
        key_dir, status=STATUS_ACTIVE, now=now or dt.datetime.now(tz=dt.UTC), name=name
    )
    write_trust_bundle(key_dir)
    return info


def rotate_signing_key(
    key_dir: Path, *, name: str | None = None, now: dt.datetime | None = None
) -> SigningKeyInfo:
    """Create a new active key and retire the old one (still trusted for issued packages)."""
    previous = [k for k in list_signing_keys(key_dir) if k.status == STATUS_ACTIVE]
    info = _create_key(
        key_dir, status=STATUS_ACTIVE, now=now or dt.datetime.now(tz=dt.UTC), name=name
    )
    for old in previous:
        meta = _read_meta(old.path)
        meta["status"] = STATUS_RETIRED
        _write_meta(old.path, meta)
    write_trust_bundle(key_dir)
    return info


def revoke_signing_key(key_dir: Path, name: str) -> SigningKeyInfo:
    """Drop a key from the trust bundle; packages signed with it stop verifying."""
    matches = [k for k in list_signing_keys(key_dir) if k.name == name]
    if not matches:
        raise SigningError(f"no signing key named {name!r}")
    meta = _read_meta(matches[0].path)
    meta["status"] = STATUS_REVOKED
    _write_meta(matches[0].path, meta)
    write_trust_bundle(key_dir)
    return _info(matches[0].path)


def load_active_signer(key_dir: Path) -> HybridSigner:
    """The signer for new packages: the newest active key pair."""
    active = [k for k in list_signing_keys(key_dir) if k.status == STATUS_ACTIVE]
    if not active:
        raise SigningError(f"no active signing key in {key_dir.name}/ (generate one first)")
    path = active[-1].path
    try:
        mldsa_key = serialization.load_pem_private_key((path / MLDSA_PRIVATE).read_bytes(), None)
        ecdsa_key = serialization.load_pem_private_key((path / ECDSA_PRIVATE).read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise SigningError(f"{path.name}: cannot load private keys: {exc}") from None
    if not isinstance(mldsa_key, mldsa.MLDSA65PrivateKey):
        raise SigningError(f"{path.name}: {MLDSA_PRIVATE} is not an ML-DSA-65 key")
    if not isinstance(ecdsa_key, ec.EllipticCurvePrivateKey):
        raise SigningError(f"{path.name}: {ECDSA_PRIVATE} is not an EC key")
    return HybridSigner(active[-1].name, mldsa_key, ecdsa_key)


def trusted_public_pems(key_dir: Path) -> bytes:
    """PEM bundle of every non-revoked public key, newest first."""
    blocks: list[bytes] = []
    for info in reversed(list_signing_keys(key_dir)):
        if info.status == STATUS_REVOKED:
            continue
        blocks.append((info.path / MLDSA_PUBLIC).read_bytes())
        blocks.append((info.path / ECDSA_PUBLIC).read_bytes())
    return b"".join(blocks)


def write_trust_bundle(key_dir: Path) -> Path:
    """Regenerate key_dir/trust.pem, the file vehicles are provisioned with."""
    path = key_dir / TRUST_BUNDLE
    tmp = key_dir / (TRUST_BUNDLE + ".tmp")
    tmp.write_bytes(trusted_public_pems(key_dir))
    tmp.replace(path)
    return path


def parse_trust_pems(data: bytes) -> TrustSet:
    """Build a trust set from concatenated PEM public keys (ML-DSA-65 and EC P-256)."""
    mldsa_keys: list[mldsa.MLDSA65PublicKey] = []
    ecdsa_keys: list[ec.EllipticCurvePublicKey] = []
    for block in _PEM_BLOCK_RE.findall(data):
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, TypeError) as exc:
            raise SigningError(f"unreadable public key in trust set: {exc}") from None
        if isinstance(key, mldsa.MLDSA65PublicKey):
            mldsa_keys.append(key)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            ecdsa_keys.append(key)
        else:
            raise SigningError(f"trust set holds an unsupported key type {type(key).__name__}")
    trust = TrustSet(mldsa_keys, ecdsa_keys)
    if not trust.mldsa or not trust.ecdsa:
        raise SigningError("trust set needs at least one ML-DSA-65 and one ECDSA-P256 key")
    return trust


def load_trust_set(path: Path) -> TrustSet:
    """Load a trust set from a PEM bundle file or a directory of *.pem public keys."""
    try:
        if path.is_dir():
            data = b"".join(p.read_bytes() for p in sorted(path.glob("*.pem")))
        else:
            data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read trust set {path}: {exc.strerror}") from None
    return parse_trust_pems(data)
