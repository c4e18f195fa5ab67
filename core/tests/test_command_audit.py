"""Every management command that changes state leaves audit events under "system:<command>"."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command

from core.audit import check_chain
from core.models import AuditEvent
from firmware import signing
from firmware.models import SigningKey
from pqc.tests.conftest import VIN_A

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_signing_key_dir(settings, tmp_path) -> None:
    settings.SIGNING_KEY_DIR = tmp_path / "signing"


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _events(prefix: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__startswith=prefix).order_by("id"))


# -- import_registry -----------------------------------------------------------------------


def test_import_registry_records_one_event_per_run_that_changed_something(tmp_path) -> None:
    document = yaml.safe_load(Path(settings.ECU_REGISTRY_FILE).read_text())
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump(document))

    _run("import_registry", str(registry), "--verbosity", "0")
    _run("import_registry", str(registry), "--verbosity", "0")
    document["ecus"][0]["name"] = "Renamed controller"
    registry.write_text(yaml.safe_dump(document))
    _run("import_registry", str(registry), "--verbosity", "0")

    first, second = _events("ecu_registry.")
    assert (first.action, first.actor_label) == ("ecu_registry.imported", "system:import_registry")
    assert first.details["created"]["ecus"] == 100
    assert first.details["created"]["zones"] == 6
    assert second.details["updated"]["ecus"] == 1
    assert second.details["unchanged"]["ecus"] == 99
    assert second.details["sha256"] == hashlib.sha256(registry.read_bytes()).hexdigest()
    assert first.details["os_user"]
    assert check_chain().intact


# -- ensure_admin --------------------------------------------------------------------------


def test_ensure_admin_audits_creation_and_reset_without_the_password(monkeypatch) -> None:
    monkeypatch.delenv("OTA_ADMIN_USERNAME", raising=False)
    monkeypatch.delenv("OTA_ADMIN_PASSWORD", raising=False)
    printed = _run("ensure_admin")
    _run("ensure_admin")  # exists: changes nothing, records nothing
    monkeypatch.setenv("OTA_ADMIN_PASSWORD", "correct horse battery")
    _run("ensure_admin")

    created, reset = _events("user.")
    admin = User.objects.get(username="admin")
    assert (created.action, created.actor_label, created.object_id) == (
        "user.created",
        "system:ensure_admin",
        str(admin.pk),
    )
    assert reset.action == "user.password_set"
    assert reset.details["password_source"] == "environment"
    generated = printed.rsplit("password: ", 1)[1].strip()
    for event in (created, reset):
        text = str(event.before) + str(event.after) + str(event.details)
        assert generated not in text and "correct horse" not in text
        assert "pbkdf2" not in text and "md5" not in text


# -- pqc_pki -------------------------------------------------------------------------------


@pytest.fixture
def pki_dir(settings, tmp_path):
    settings.PKI_DIR = tmp_path / "pki"
    settings.OTA_SERVER_HOSTNAMES = ["ota.example.com"]
    return settings.PKI_DIR


def _csr(vin: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, vin)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def test_pqc_pki_commands_write_the_hash_chained_trail(pki_dir, tmp_path) -> None:
    _run("pqc_pki", "init", "--family", "ecdsa-p256")
    issued = _run("pqc_pki", "issue-vehicle", VIN_A, "--out", str(tmp_path / "v"))
    serial = issued.split("certificate ", 1)[1].split()[0]
    csr_path = tmp_path / "vehicle.csr"
    csr_path.write_bytes(_csr(VIN_A))
    _run("pqc_pki", "sign-csr", str(csr_path), "--out", str(tmp_path / "signed.pem"))
    _run("pqc_pki", "revoke", serial, "--reason", "stolen")

    events = _events("certificate.")
    assert [e.action for e in events] == [
        "certificate.pki_initialised",
        "certificate.issued",
        "certificate.csr_signed",
        "certificate.revoked",
    ]
    assert {e.actor_label for e in events} == {"system:pqc_pki"}
    init, issue, signed, revoke = events
    assert init.details["created"]
    assert (issue.object_id, issue.vehicle_vin, issue.details["family"]) == (
        serial,
        VIN_A,
        "ecdsa-p256",
    )
    assert signed.vehicle_vin == VIN_A and signed.details["family"] == "ecdsa-p256"
    assert (revoke.object_id, revoke.vehicle_vin, revoke.details["reason"]) == (
        serial,
        VIN_A,
        "stolen",
    )
    # Revoking again changes nothing and records nothing.
    _run("pqc_pki", "revoke", serial)
    assert len(_events("certificate.revoked")) == 1


# -- signing_keys --------------------------------------------------------------------------


def test_signing_key_generation_rotation_and_retirement_are_one_event_each() -> None:
    _run("signing_keys", "generate", "--name", "k1")
    _run("signing_keys", "rotate", "--name", "k2")

    events = [(e.action, e.object_id, e.actor_label) for e in _events("signing_key.")]
    assert events == [
        ("signing_key.generated", "k1", "system:signing_keys"),
        ("signing_key.retired", "k1", "system:signing_keys"),
        ("signing_key.rotated", "k2", "system:signing_keys"),
    ]
    k2 = SigningKey.objects.get(name="k2")
    rotated = _events("signing_key.rotated")[0]
    assert rotated.after["mldsa_key_id"] == k2.mldsa_key_id


def test_signing_key_admin_list_changes_nothing(admin_user, client) -> None:
    # A key made on disk alone (a restored key directory) is not copied in by looking.
    signing.generate_signing_key(Path(settings.SIGNING_KEY_DIR), name="restored")
    client.force_login(admin_user)
    events = AuditEvent.objects.count()
    assert client.get("/admin/firmware/signingkey/").status_code == 200
    assert not SigningKey.objects.exists()
    assert AuditEvent.objects.count() == events

    _run("signing_keys", "sync")
    found = _events("signing_key.")
    assert [(e.action, e.object_id, e.actor_label) for e in found] == [
        ("signing_key.found", "restored", "system:signing_keys")
    ]
