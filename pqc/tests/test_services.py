from __future__ import annotations

import pytest

from pqc import services
from pqc.choices import CertificateAction
from pqc.models import CertificateEvent, RevokedCertificate
from pqc.pki import FleetPki, PkiError
from pqc.tests.conftest import VIN_A

pytestmark = pytest.mark.django_db


@pytest.fixture
def pki(tmp_path) -> FleetPki:
    pki = FleetPki(tmp_path / "pki")
    pki.init(families=["ecdsa-p256", "ml-dsa-65"])
    return pki


def test_initialise_pki_audits_what_it_created(tmp_path) -> None:
    pki = FleetPki(tmp_path / "fresh")
    created = services.initialise_pki(pki=pki, actor="system:ops", families=["ecdsa-p256"])

    assert created == ["ecdsa-p256 CA", "ecdsa-p256 server certificate"]
    event = CertificateEvent.objects.get()
    assert (event.action, event.actor) == (CertificateAction.PKI_INITIALISED, "system:ops")
    assert services.initialise_pki(pki=pki, actor="system:ops", families=["ecdsa-p256"]) == []
    assert CertificateEvent.objects.count() == 1


def test_issue_vehicle_certificate_writes_bundle_and_audit(pki: FleetPki, tmp_path) -> None:
    issued, paths = services.issue_vehicle_certificate(
        pki=pki, vin=VIN_A, family="ml-dsa-65", out_dir=tmp_path / "out", actor="system:ops"
    )
    assert paths.cert.exists() and paths.key.exists() and paths.ca_bundle.exists()
    event = CertificateEvent.objects.get(serial=issued.serial)
    assert (event.action, event.subject, event.family) == (
        CertificateAction.ISSUED,
        VIN_A,
        "ml-dsa-65",
    )


def test_revoke_certificate_updates_crl_row_and_audit_once(pki: FleetPki) -> None:
    issued = pki.issue_vehicle(VIN_A)

    revoked = services.revoke_certificate(
        pki=pki, serial=issued.serial.upper(), actor="system:ops", reason="stolen"
    )
    services.revoke_certificate(pki=pki, serial=issued.serial, actor="system:ops")

    assert revoked.subject == VIN_A
    assert issued.cert.serial_number in pki.revoked_serials()
    assert RevokedCertificate.objects.count() == 1
    assert CertificateEvent.objects.filter(action=CertificateAction.REVOKED).count() == 1


def test_revoking_an_unknown_serial_changes_nothing(pki: FleetPki) -> None:
    with pytest.raises(PkiError, match="^serial: "):
        services.revoke_certificate(pki=pki, serial="abc123", actor="system:ops")
    assert not RevokedCertificate.objects.exists()
    assert not CertificateEvent.objects.exists()
    assert pki.revoked_serials() == set()


def test_revoking_a_non_hex_serial_is_refused_naming_the_field(pki: FleetPki) -> None:
    with pytest.raises(PkiError, match="^serial: 'xyz'"):
        services.revoke_certificate(pki=pki, serial="xyz", actor="system:ops")
