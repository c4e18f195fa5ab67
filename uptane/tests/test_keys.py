"""ML-DSA through securesystemslib, checked against published FIPS 204 vectors, and the
hybrid rule on role keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import CryptoSigner, Key, Signature, SSlibKey

from uptane import keys

VECTORS = json.loads((Path(__file__).parent / "data" / "mldsa_vectors.json").read_text())
PRIVATE = {"ML-DSA-65": mldsa.MLDSA65PrivateKey, "ML-DSA-87": mldsa.MLDSA87PrivateKey}
PUBLIC = {"ML-DSA-65": mldsa.MLDSA65PublicKey, "ML-DSA-87": mldsa.MLDSA87PublicKey}
ALGORITHM = {"ML-DSA-65": keys.ML_DSA_65, "ML-DSA-87": keys.ML_DSA_87}
PARAMETER_SETS = sorted(VECTORS["parameter_sets"])


def _raw_public(key: Key) -> bytes:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(key.keyval["public"].encode()).public_bytes_raw()


@pytest.mark.parametrize("parameter_set", PARAMETER_SETS)
def test_key_from_published_seed_has_the_published_public_key(parameter_set: str) -> None:
    vector = VECTORS["parameter_sets"][parameter_set]["keygen"]
    private = PRIVATE[parameter_set].from_seed_bytes(bytes.fromhex(vector["privateSeed"]))
    signer = CryptoSigner(private)
    key = keys.public_key_from_dict(signer.public_key.keyid, signer.public_key.to_dict())
    assert keys.algorithm_of(key) == ALGORITHM[parameter_set]
    assert _raw_public(key).hex() == vector["publicKey"]


@pytest.mark.parametrize("parameter_set", PARAMETER_SETS)
def test_published_signatures_verify_or_fail_as_published(parameter_set: str) -> None:
    vectors = VECTORS["parameter_sets"][parameter_set]["verify"]
    public = PUBLIC[parameter_set].from_public_bytes(bytes.fromhex(vectors["publicKey"]))
    outcomes = {}
    for case in vectors["tests"]:
        try:
            public.verify(bytes.fromhex(case["sig"]), bytes.fromhex(case["msg"]))
            outcomes[case["tcId"]] = "valid"
        except InvalidSignature:
            outcomes[case["tcId"]] = "invalid"
    assert outcomes == {case["tcId"]: case["result"] for case in vectors["tests"]}
    assert "valid" in outcomes.values() and "invalid" in outcomes.values()


@pytest.mark.parametrize("parameter_set", PARAMETER_SETS)
def test_published_malformed_public_keys_are_refused(parameter_set: str) -> None:
    for case in VECTORS["parameter_sets"][parameter_set]["malformed_public_keys"]:
        with pytest.raises(ValueError):
            PUBLIC[parameter_set].from_public_bytes(bytes.fromhex(case["publicKey"]))


@pytest.mark.parametrize("algorithm", keys.ALGORITHMS)
def test_sign_and_verify_round_trip_through_files(algorithm: str, tmp_path: Path) -> None:
    keys.write_signer(keys.generate_signer(algorithm), tmp_path, "k")
    signer = keys.read_signer(tmp_path, "k")
    signature = signer.sign(b"metadata bytes")
    reread = keys.read_public_key(tmp_path / "k.pub.json")
    reread.verify_signature(signature, b"metadata bytes")
    with pytest.raises(UnverifiedSignatureError):
        reread.verify_signature(signature, b"metadata bytez")
    assert (tmp_path / "k.pem").stat().st_mode & 0o077 == 0


def test_a_signature_by_another_key_or_garbled_is_refused() -> None:
    signer = keys.generate_signer(keys.ML_DSA_65)
    other = keys.generate_signer(keys.ML_DSA_65)
    signature = other.sign(b"data")
    with pytest.raises(UnverifiedSignatureError):
        signer.public_key.verify_signature(
            Signature(signer.public_key.keyid, signature.signature), b"data"
        )
    for garbled in ("zz", "", signature.signature[:-2]):
        with pytest.raises(UnverifiedSignatureError):
            signer.public_key.verify_signature(Signature(signer.public_key.keyid, garbled), b"data")


def test_malformed_keys_are_refused_with_a_reason() -> None:
    good = keys.generate_signer(keys.ML_DSA_65).public_key.to_dict()
    ecdsa = keys.generate_signer(keys.ECDSA_P256).public_key.to_dict()
    cases = [
        ("not a dict", "JSON object"),
        ({**good, "keyval": {"public": "-----BEGIN PUBLIC KEY-----\nAAAA\n"}}, "does not decode"),
        ({**good, "scheme": "ml-dsa-87/1"}, "not ECDSA-P256"),
        ({**ecdsa, "keyval": good["keyval"]}, "not ECDSA-P256"),
        ({**good, "keyval": {}}, "public key string required"),
        ({"keytype": "ml-dsa"}, "kid"),
        ({**good, "scheme": "ml-dsa-1024/1"}, "Unsupported"),
    ]
    for data, reason in cases:
        with pytest.raises(keys.InvalidKeyError, match=reason):
            keys.public_key_from_dict("kid", data)


def test_hybrid_rule_needs_a_signature_of_each_family() -> None:
    e1, e2 = (keys.generate_signer(keys.ECDSA_P256).public_key for _ in range(2))
    m1 = keys.generate_signer(keys.ML_DSA_65).public_key
    assert keys.hybrid_policy_errors([e1, m1], 2) == []
    assert keys.hybrid_policy_errors([e1, m1], 1)
    assert "no post-quantum key" in keys.hybrid_policy_errors([e1, e2], 2)
    # Two ECDSA keys alone would meet 2 of 3: one family could sign without the other.
    assert keys.hybrid_policy_errors([e1, e2, m1], 2)
    assert keys.hybrid_policy_errors([e1, e2, m1], 3) == []


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(keys.InvalidKeyError, match="unknown algorithm"):
        keys.generate_signer("rsa-2048")
    assert isinstance(keys.generate_signer(keys.ECDSA_P256).public_key, SSlibKey)
