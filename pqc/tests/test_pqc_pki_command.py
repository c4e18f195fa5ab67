from __future__ import annotations

import stat
from io import StringIO

import pytest
from cryptography import x509
from django.core.management import CommandError, call_command

from pqc.models import CertificateEvent, RevokedCertificate
from pqc.pki import FleetPki, generate_key
from pqc.tests.conftest import VIN_A

pytestmark = pytest.mark.django_db


@pytest.fixture
def pki_dir(settings, tmp_path):
    settings.PKI_DIR = tmp_path / "pki"
    settings.OTA_SERVER_HOSTNAMES = ["ota.example.com"]
    return settings.PKI_DIR


def run(*args: str) -> str:
    out = StringIO()
    call_command("pqc_pki", *args, stdout=out)
    return out.getvalue()


def test_init_creates_cas_and_server_certificates(pki_dir) -> None:
    output = run("init", "--family", "ecdsa-p256", "--family", "ml-dsa-65")

    assert "created ml-dsa-65 CA" in output
    assert FleetPki(pki_dir).server_families() == ["ecdsa-p256", "ml-dsa-65"]
    assert "already initialised" in run("init", "--family", "ecdsa-p256")


def test_issue_vehicle_writes_chain_key_and_ca_bundle(pki_dir, tmp_path) -> None:
    run("init", "--family", "ml-dsa-87")
    out_dir = tmp_path / "vehicle"

    output = run("issue-vehicle", VIN_A, "--out", str(out_dir), "--family", "ml-dsa-87")

    assert f"for {VIN_A}" in output
    chain = x509.load_pem_x509_certificates((out_dir / "vehicle.crt").read_bytes())
    assert len(chain) == 2
    assert stat.S_IMODE((out_dir / "vehicle.key").stat().st_mode) == 0o600
    assert (out_dir / "ca-bundle.pem").exists()


def test_issue_vehicle_with_a_bad_vin_names_the_field_and_writes_nothing(pki_dir, tmp_path) -> None:
    run("init", "--family", "ecdsa-p256")
    events = CertificateEvent.objects.count()
    with pytest.raises(CommandError, match="^vin: "):
        run("issue-vehicle", "NOT-A-VIN", "--out", str(tmp_path / "v"))
    assert not (tmp_path / "v").exists()
    assert CertificateEvent.objects.count() == events


def test_sign_csr_prints_the_chain(pki_dir, tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    run("init", "--family", "ml-dsa-44")
    key = generate_key("ml-dsa-44")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, VIN_A)]))
        .sign(key, None)
    )
    path = tmp_path / "vehicle.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))

    chain = x509.load_pem_x509_certificates(run("sign-csr", str(path)).encode())

    assert chain[0].public_key() == key.public_key()


def test_revoke_then_list_shows_the_certificate_revoked(pki_dir, tmp_path) -> None:
    run("init", "--family", "ecdsa-p256")
    run("issue-vehicle", VIN_A, "--out", str(tmp_path / "v"))
    serial = format(
        x509.load_pem_x509_certificates((tmp_path / "v" / "vehicle.crt").read_bytes())[
            0
        ].serial_number,
        "x",
    )

    assert "revoked" in run("revoke", serial, "--reason", "key compromise")

    listing = run("list")
    line = next(line for line in listing.splitlines() if line.startswith(serial))
    assert VIN_A in line
    assert line.endswith("revoked")
    assert RevokedCertificate.objects.get().reason == "key compromise"


def test_revoke_unknown_serial_fails_cleanly(pki_dir) -> None:
    run("init", "--family", "ecdsa-p256")
    with pytest.raises(CommandError, match="^serial: "):
        run("revoke", "abcdef")
