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


def test_sign_csr_that_cannot_write_its_out_file_issues_nothing(pki_dir, tmp_path) -> None:
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
    (tmp_path / "taken").write_text("not a directory")
    out = tmp_path / "taken" / "vehicle.crt"
    events = CertificateEvent.objects.count()

    with pytest.raises(CommandError) as refused:
        run("sign-csr", str(path), "--out", str(out))

    assert str(refused.value) == (f"out: cannot write {out}: Not a directory; nothing was issued")
    assert _vehicle_certificates(pki_dir) == []
    assert CertificateEvent.objects.count() == events


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


def _vehicle_certificates(pki_dir) -> list[str]:
    return [
        info.subject for info in FleetPki(pki_dir).list_certificates() if info.kind == "vehicle"
    ]


@pytest.mark.parametrize("blocker", ["parent is a file", "key path is a directory"])
def test_issue_vehicle_that_cannot_write_its_files_records_nothing(
    pki_dir, tmp_path, blocker
) -> None:
    run("init", "--family", "ecdsa-p256")
    events = CertificateEvent.objects.count()
    if blocker == "parent is a file":
        (tmp_path / "taken").write_text("not a directory")
        out_dir = tmp_path / "taken" / "vehicle"
    else:
        out_dir = tmp_path / "vehicle"
        (out_dir / "vehicle.key").mkdir(parents=True)

    with pytest.raises(CommandError, match=f"^out: cannot write {out_dir}/") as refused:
        run("issue-vehicle", VIN_A, "--out", str(out_dir))

    assert "nothing was issued" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert _vehicle_certificates(pki_dir) == []
    assert CertificateEvent.objects.count() == events
    if blocker == "key path is a directory":
        # The certificate written before the key failed is taken back too.
        assert sorted(p.name for p in out_dir.iterdir()) == ["vehicle.key"]


@pytest.mark.parametrize("days", ["-5", "0", "3651", "99999999"])
def test_issue_vehicle_refuses_a_validity_out_of_range(pki_dir, tmp_path, days) -> None:
    run("init", "--family", "ecdsa-p256")
    with pytest.raises(CommandError) as refused:
        run("issue-vehicle", VIN_A, "--out", str(tmp_path / "v"), "--days", days)
    assert str(refused.value) == f"days: must be 1 to 3650 (the CA's lifetime); got {days}"
    assert not (tmp_path / "v").exists()
    assert _vehicle_certificates(pki_dir) == []


def test_issue_fleet_refuses_a_validity_out_of_range(pki_dir, tmp_path) -> None:
    run("init", "--family", "ecdsa-p256")
    with pytest.raises(CommandError, match=r"^days: must be 1 to 3650"):
        run("issue-fleet", "--count", "2", "--out", str(tmp_path / "f"), "--days", "0")
    assert not (tmp_path / "f").exists()
