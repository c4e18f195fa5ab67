"""Hybrid role keys for Uptane metadata: one ECDSA-P256 and one ML-DSA key per role.

Django-free: the offline release tool and the vehicle-side verifier import it too. Keys are
securesystemslib keys; ML-DSA comes from securesystemslib's own ML-DSA support (key type
"ml-dsa", schemes "ml-dsa-65/1" and "ml-dsa-87/1", signing the TAP 21 payload
"tuf" || 0x01 || SHA-512(data)) on cryptography's FIPS 204 implementation.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.signer import CryptoSigner, Key, Signer, SSlibKey

ECDSA_P256 = "ecdsa-p256"
ML_DSA_65 = "ml-dsa-65"
ML_DSA_87 = "ml-dsa-87"
ALGORITHMS = (ECDSA_P256, ML_DSA_65, ML_DSA_87)
# Which family an algorithm belongs to: a threshold must need a signature from each family.
FAMILY = {ECDSA_P256: "classical", ML_DSA_65: "post-quantum", ML_DSA_87: "post-quantum"}
MLDSA_SCHEME = {ML_DSA_65: "ml-dsa-65/1", ML_DSA_87: "ml-dsa-87/1"}
_MLDSA_PUBLIC_CLASS = {ML_DSA_65: mldsa.MLDSA65PublicKey, ML_DSA_87: mldsa.MLDSA87PublicKey}
# Root keys sign rarely and guard everything else: the stronger ML-DSA parameter set.
ROLE_ALGORITHMS = {
    "root": (ECDSA_P256, ML_DSA_87),
    "targets": (ECDSA_P256, ML_DSA_65),
    "snapshot": (ECDSA_P256, ML_DSA_65),
    "timestamp": (ECDSA_P256, ML_DSA_65),
}
TOP_LEVEL_ROLES = tuple(ROLE_ALGORITHMS)


class InvalidKeyError(ValueError):
    """A public key that is not one of ours, or whose bytes do not decode as its algorithm."""


def generate_signer(algorithm: str) -> CryptoSigner:
    """A new private key of `algorithm`, as a securesystemslib signer."""
    if algorithm == ECDSA_P256:
        return CryptoSigner.generate_ecdsa()
    if algorithm in MLDSA_SCHEME:
        return CryptoSigner.generate_mldsa(scheme=MLDSA_SCHEME[algorithm])
    raise InvalidKeyError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")


def generate_role_signers(role: str) -> list[CryptoSigner]:
    """One new signer per algorithm the role needs (delegated roles use the targets pair)."""
    return [generate_signer(a) for a in ROLE_ALGORITHMS.get(role, ROLE_ALGORITHMS["targets"])]


def algorithm_of(key: Key) -> str:
    """The algorithm of a public key we accept, checking that its bytes really are one."""
    public = key.keyval.get("public") if isinstance(key.keyval, dict) else None
    if not isinstance(public, str):
        raise InvalidKeyError(f"key {key.keyid[:16]}: keyval.public must be a PEM string")
    try:
        loaded = load_pem_public_key(public.encode())
    except ValueError as exc:
        raise InvalidKeyError(f"key {key.keyid[:16]}: public key does not decode ({exc})") from None
    if (
        (key.keytype, key.scheme) == ("ecdsa", "ecdsa-sha2-nistp256")
        and isinstance(loaded, ec.EllipticCurvePublicKey)
        and loaded.curve.name == "secp256r1"
    ):
        return ECDSA_P256
    for algorithm, scheme in MLDSA_SCHEME.items():
        if (key.keytype, key.scheme) == ("ml-dsa", scheme) and isinstance(
            loaded, _MLDSA_PUBLIC_CLASS[algorithm]
        ):
            return algorithm
    raise InvalidKeyError(
        f"key {key.keyid[:16]}: {key.keytype}/{key.scheme} with these bytes is not "
        f"ECDSA-P256, ML-DSA-65 or ML-DSA-87"
    )


def public_key_from_dict(keyid: str, data: Any) -> Key:
    """Parse and check a key as metadata carries it; InvalidKeyError names what is wrong."""
    if not isinstance(data, dict):
        raise InvalidKeyError("a key is a JSON object with keytype, scheme and keyval")
    try:
        key = Key.from_dict(keyid, dict(data))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidKeyError(f"key {keyid[:16]}: {exc}") from None
    algorithm_of(key)
    return key


def hybrid_policy_errors(keys: Iterable[Key], threshold: int) -> list[str]:
    """Why a role's keys and threshold would let one algorithm family alone sign, if they do.

    TUF counts signatures, not algorithms, so the rule is put on the numbers: both families
    present, and the threshold larger than the keys of either family, so that every set of
    signatures that meets it holds at least one of each.
    """
    families = Counter(FAMILY[algorithm_of(key)] for key in keys)
    errors = [
        f"no {family} key" for family in ("classical", "post-quantum") if not families[family]
    ]
    largest = max(families.values(), default=0)
    if threshold <= largest:
        errors.append(
            f"threshold {threshold} can be met by one algorithm family alone ({largest} keys)"
        )
    return errors


def key_files(directory: Path, name: str) -> tuple[Path, Path]:
    return directory / f"{name}.pem", directory / f"{name}.pub.json"


def write_signer(signer: CryptoSigner, directory: Path, name: str) -> Path:
    """Store a private key (PKCS#8 PEM, owner-only) and its public key JSON under `name`."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = key_files(directory, name)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(signer.private_bytes)
    key = signer.public_key
    public_path.write_text(json.dumps({"keyid": key.keyid, **key.to_dict()}, indent=1))
    return private_path


def read_public_key(path: Path) -> Key:
    data = json.loads(path.read_text())
    keyid = data.pop("keyid", None)
    if not isinstance(keyid, str):
        raise InvalidKeyError(f"{path.name}: no keyid")
    return public_key_from_dict(keyid, data)


def read_signer(directory: Path, name: str) -> Signer:
    """The signer stored by write_signer, through securesystemslib's file URI scheme."""
    private_path, public_path = key_files(directory, name)
    key = read_public_key(public_path)
    if not isinstance(key, SSlibKey):
        raise InvalidKeyError(f"{public_path.name}: not a file-backed key")
    return Signer.from_priv_key_uri(f"file2:{private_path.resolve()}", key)
