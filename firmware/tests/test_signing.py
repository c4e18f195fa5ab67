from __future__ import annotations

import datetime as dt
import io
import stat
from pathlib import Path

import pytest

from firmware import otap, signing
from firmware.tests.otap_helpers import NOW, build_bytes, write_images


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_private_keys_are_readable_by_owner_only(tmp_path: Path) -> None:
    info = signing.generate_signing_key(tmp_path / "keys", now=NOW)
    assert _mode(info.path / signing.MLDSA_PRIVATE) == 0o600
    assert _mode(info.path / signing.ECDSA_PRIVATE) == 0o600
    assert _mode(tmp_path / "keys") == 0o700
    assert info.status == signing.STATUS_ACTIVE
    assert len(bytes.fromhex(info.mldsa_key_id)) == 16


def test_generate_refuses_when_an_active_key_exists(tmp_path: Path) -> None:
    signing.generate_signing_key(tmp_path, now=NOW)
    with pytest.raises(signing.SigningError, match="rotate"):
        signing.generate_signing_key(tmp_path, now=NOW)


def test_rotation_retires_the_old_key_but_keeps_trusting_it(tmp_path: Path) -> None:
    first = signing.generate_signing_key(tmp_path, now=NOW)
    old_signer = signing.load_active_signer(tmp_path)
    second = signing.rotate_signing_key(tmp_path, now=NOW + dt.timedelta(days=1))
    listed = signing.list_signing_keys(tmp_path)
    assert [(k.name, k.status) for k in listed] == [
        (first.name, signing.STATUS_RETIRED),
        (second.name, signing.STATUS_ACTIVE),
    ]
    assert signing.load_active_signer(tmp_path).mldsa_key_id.hex() == second.mldsa_key_id
    trust = signing.load_trust_set(tmp_path / signing.TRUST_BUNDLE)
    assert old_signer.mldsa_key_id in trust.mldsa
    assert len(trust) == 4


def test_revoked_key_leaves_the_trust_bundle_and_its_packages_fail(tmp_path: Path) -> None:
    signing.generate_signing_key(tmp_path / "keys", name="k1", now=NOW)
    old_signer = signing.load_active_signer(tmp_path / "keys")
    signing.rotate_signing_key(tmp_path / "keys", name="k2", now=NOW)
    data = build_bytes(
        type("Keys", (), {"signer": old_signer})(),  # only .signer is used by the builder
        write_images(tmp_path / "img", [b"image"]),
    )
    signing.revoke_signing_key(tmp_path / "keys", "k1")
    trust = signing.load_trust_set(tmp_path / "keys" / signing.TRUST_BUNDLE)
    with pytest.raises(otap.OtapError, match="not trusted"):
        otap.verify_package(io.BytesIO(data), trust=trust, now=NOW)


def test_no_active_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(signing.SigningError, match="no active signing key"):
        signing.load_active_signer(tmp_path)


def test_trust_set_loads_from_a_directory_of_pem_files(tmp_path: Path) -> None:
    info = signing.generate_signing_key(tmp_path / "keys", now=NOW)
    trust_dir = tmp_path / "trust"
    trust_dir.mkdir()
    for name in (signing.MLDSA_PUBLIC, signing.ECDSA_PUBLIC):
        (trust_dir / name).write_bytes((info.path / name).read_bytes())
    trust = signing.load_trust_set(trust_dir)
    assert bytes.fromhex(info.ecdsa_key_id) in trust.ecdsa


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "at least one ML-DSA-65 and one ECDSA-P256"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "unreadable public key"),
    ],
)
def test_bad_trust_files_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "trust.pem").write_bytes(content)
    with pytest.raises(signing.SigningError, match=message):
        signing.load_trust_set(tmp_path / "trust.pem")


def test_trust_set_with_only_one_algorithm_is_refused(tmp_path: Path) -> None:
    info = signing.generate_signing_key(tmp_path / "keys", now=NOW)
    with pytest.raises(signing.SigningError, match="at least one"):
        signing.load_trust_set(info.path / signing.MLDSA_PUBLIC)


def test_missing_trust_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(signing.SigningError, match="cannot read trust set"):
        signing.load_trust_set(tmp_path / "absent.pem")
