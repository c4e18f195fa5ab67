from __future__ import annotations

import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pqc.pki import FAMILIES, FleetPki, PkiError, generate_key, key_family

VIN = "WVWZZZ1JZXW000001"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FleetPki:
    pki = FleetPki(tmp_path_factory.mktemp("pki") / "pki")
    pki.init(hostnames=["ota.example.com", "10.0.0.5"])
    return pki


def test_init_creates_a_root_ca_and_server_certificate_per_family(pki: FleetPki) -> None:
    assert pki.families() == list(FAMILIES)
    assert pki.server_families() == list(FAMILIES)
    for family in FAMILIES:
        ca = pki.ca_cert(family)
        assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert key_family(ca.public_key()) == family
    assert len(x509.load_pem_x509_certificates(pki.ca_bundle_path.read_bytes())) == 4


def test_init_is_idempotent(pki: FleetPki) -> None:
    before = pki.ca_cert_path("ml-dsa-65").read_bytes()
    assert pki.init(hostnames=["ota.example.com"]) == []
    assert pki.ca_cert_path("ml-dsa-65").read_bytes() == before


def test_server_certificate_names_hosts_and_loopback(pki: FleetPki) -> None:
    cert = x509.load_pem_x509_certificates(pki.server_cert_path("ml-dsa-87").read_bytes())[0]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"ota.example.com", "localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(a) for a in ("10.0.0.5", "127.0.0.1", "::1")
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku


def test_private_keys_are_written_owner_only(pki: FleetPki, tmp_path) -> None:
    paths = pki.write_vehicle_bundle(pki.issue_vehicle(VIN, family="ml-dsa-44"), tmp_path / "v")
    for path in [paths.key, pki.ca_key_path("ecdsa-p256"), pki.server_key_path("ml-dsa-65")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_vehicle_certificate_subject_is_the_vin(pki: FleetPki) -> None:
    issued = pki.issue_vehicle(VIN, family="ml-dsa-65")
    cert = issued.cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == VIN
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == VIN
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"urn:vin:{VIN}"]
    assert (
        ExtendedKeyUsageOID.CLIENT_AUTH
        in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    assert isinstance(cert.public_key(), mldsa.MLDSA65PublicKey)
    cert.verify_directly_issued_by(pki.ca_cert("ml-dsa-65"))


def test_vehicle_bundle_holds_chain_key_and_ca_bundle(pki: FleetPki, tmp_path) -> None:
    issued = pki.issue_vehicle(VIN)
    paths = pki.write_vehicle_bundle(issued, tmp_path / "bundle")
    chain = x509.load_pem_x509_certificates(paths.cert.read_bytes())
    assert [c.serial_number for c in chain] == [
        issued.cert.serial_number,
        pki.ca_cert("ecdsa-p256").serial_number,
    ]
    assert b"PRIVATE KEY" in paths.key.read_bytes()
    assert len(x509.load_pem_x509_certificates(paths.ca_bundle.read_bytes())) == 4


@pytest.mark.parametrize("vin", ["TOO-SHORT", "WVWZZZ1JZXW00000I", "wvwzzz1jzxw000001", ""])
def test_invalid_vin_is_refused_naming_the_field(pki: FleetPki, vin: str) -> None:
    with pytest.raises(PkiError, match="^vin: "):
        pki.issue_vehicle(vin)


def test_unknown_family_is_refused(pki: FleetPki) -> None:
    with pytest.raises(PkiError, match="^family: "):
        pki.issue_vehicle(VIN, family="rsa-2048")


def _csr(key, cn: str) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization

    algorithm = hashes.SHA256() if isinstance(key, ec.EllipticCurvePrivateKey) else None
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, algorithm)
    )
    return request.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("family", ["ecdsa-p256", "ml-dsa-87"])
def test_signing_a_csr_certifies_the_vehicles_own_key(pki: FleetPki, family: str) -> None:
    key = generate_key(family)
    issued = pki.sign_csr(_csr(key, VIN))
    assert issued.key is None
    assert issued.family == family
    assert issued.cert.public_key() == key.public_key()
    issued.cert.verify_directly_issued_by(pki.ca_cert(family))


def test_csr_without_a_vin_subject_is_refused(pki: FleetPki) -> None:
    with pytest.raises(PkiError, match="^vin: "):
        pki.sign_csr(_csr(generate_key("ecdsa-p256"), "my-laptop"))


def test_garbage_csr_is_refused(pki: FleetPki) -> None:
    with pytest.raises(PkiError, match="^csr: "):
        pki.sign_csr(
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        )


def test_revoked_certificate_is_on_its_families_crl_and_listed(pki: FleetPki) -> None:
    issued = pki.issue_vehicle(VIN, family="ml-dsa-44")
    pki.revoke(issued.cert.serial_number)

    crl = pki.load_crl("ml-dsa-44")
    assert crl is not None
    assert crl.get_revoked_certificate_by_serial_number(issued.cert.serial_number) is not None
    assert crl.is_signature_valid(pki.ca_cert("ml-dsa-44").public_key())
    listed = {i.serial: i for i in pki.list_certificates()}
    assert listed[issued.serial].revoked
    assert listed[issued.serial].subject == VIN
    assert listed[issued.serial].kind == "vehicle"


def test_revoking_an_unknown_serial_is_refused(pki: FleetPki) -> None:
    with pytest.raises(PkiError, match="^serial: "):
        pki.revoke(0xDEADBEEF)


def test_passphrase_protects_every_key(tmp_path, monkeypatch) -> None:
    pki = FleetPki(tmp_path / "locked", passphrase=b"correct horse")
    pki.init(families=["ml-dsa-65"])
    assert b"ENCRYPTED PRIVATE KEY" in pki.ca_key_path("ml-dsa-65").read_bytes()

    with pytest.raises(PkiError, match="PKI_KEY_PASSPHRASE"):
        FleetPki(tmp_path / "locked").issue_vehicle(VIN, family="ml-dsa-65")
    assert pki.issue_vehicle(VIN, family="ml-dsa-65").cert is not None
