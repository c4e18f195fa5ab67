from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = (
    ec.EllipticCurvePrivateKey
    | mldsa.MLDSA44PrivateKey
    | mldsa.MLDSA65PrivateKey
    | mldsa.MLDSA87PrivateKey
)
PublicKey = (
    ec.EllipticCurvePublicKey
    | mldsa.MLDSA44PublicKey
    | mldsa.MLDSA65PublicKey
    | mldsa.MLDSA87PublicKey
)

FAMILIES: tuple[str, ...] = ("ecdsa-p256", "ml-dsa-44", "ml-dsa-65", "ml-dsa-87")
FAMILY_LABELS: dict[str, str] = {
    "ecdsa-p256": "ECDSA-P256",
    "ml-dsa-44": "ML-DSA-44",
    "ml-dsa-65": "ML-DSA-65",
    "ml-dsa-87": "ML-DSA-87",
}
PASSPHRASE_ENV = "PKI_KEY_PASSPHRASE"
ORGANIZATION = "OTA Fleet PKI"
CA_DAYS = 3650
SERVER_DAYS = 397
VEHICLE_DAYS = 730
# ISO 3779: 17 characters, digits and capitals without I, O and Q.
VIN_RE = re.compile(r"\A[A-HJ-NPR-Z0-9]{17}\Z")


class PkiError(ValueError):
    """A PKI operation was refused; the message names what is wrong."""


def validate_days(days: int) -> int:
    """A leaf certificate's validity in days: at least one, and never past its CA's lifetime."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= CA_DAYS:
        raise PkiError(f"days: must be 1 to {CA_DAYS} (the CA's lifetime); got {days}")
    return days


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def validate_vin(vin: str) -> str:
    if not VIN_RE.match(vin):
        raise PkiError(f"vin: {vin!r} is not a 17-character VIN (A-Z without I, O, Q, and 0-9)")
    return vin


def validate_family(family: str) -> str:
    if family not in FAMILIES:
        raise PkiError(f"family: {family!r} is not one of {', '.join(FAMILIES)}")
    return family


def generate_key(family: str) -> PrivateKey:
    """A fresh private key of the family."""
    validate_family(family)
    if family == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if family == "ml-dsa-44":
        return mldsa.MLDSA44PrivateKey.generate()
    if family == "ml-dsa-65":
        return mldsa.MLDSA65PrivateKey.generate()
    return mldsa.MLDSA87PrivateKey.generate()


def key_family(key: PrivateKey | PublicKey) -> str:
    """The family of a public or private key; P-256 only among elliptic curves."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ecdsa-p256"
        raise PkiError(f"key: curve {key.curve.name} is not supported (P-256 only)")
    for family, kinds in (
        ("ml-dsa-44", (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey)),
        ("ml-dsa-65", (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey)),
        ("ml-dsa-87", (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey)),
    ):
        if isinstance(key, kinds):
            return family
    raise PkiError(f"key: {type(key).__name__} is not an ECDSA-P256 or ML-DSA key")


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    # ML-DSA signs the message itself; only ECDSA takes a digest.
    return hashes.SHA256() if isinstance(key, ec.EllipticCurvePrivateKey) else None


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def serial_hex(serial: int) -> str:
    return f"{serial:x}"


def parse_serial(text: str) -> int:
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        return int(cleaned, 16)
    except ValueError:
        raise PkiError(f"serial: {text!r} is not a hexadecimal serial number") from None


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create with 0600 from the start so the key is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    # Atomic replace: a listener reloading the CRL never reads half a file.
    os.replace(tmp, path)


def key_to_pem(key: PrivateKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def cert_to_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def passphrase_from_env() -> bytes | None:
    """The key passphrase from settings (PKI_KEY_PASSPHRASE or PKI_KEY_PASSPHRASE_FILE)."""
    from django.conf import settings

    value = getattr(settings, "PKI_KEY_PASSPHRASE", None) if settings.configured else None
    if value is None:
        value = os.environ.get(PASSPHRASE_ENV, "")
    return value.encode() if value else None


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate the PKI issued, with its key when the PKI generated it."""

    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: PrivateKey | None
    family: str

    @property
    def serial(self) -> str:
        return serial_hex(self.cert.serial_number)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)


@dataclass(frozen=True)
class CertificateInfo:
    """One line of `pqc_pki list`."""

    serial: str
    kind: str
    subject: str
    family: str
    not_after: datetime.datetime
    revoked: bool
    fingerprint: str


@dataclass(frozen=True)
class VehicleBundlePaths:
    cert: Path
    key: Path
    ca_bundle: Path


def certificate_kind(cert: x509.Certificate) -> str:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            return "ca"
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "other"
    if ExtendedKeyUsageOID.CLIENT_AUTH in eku:
        return "vehicle"
    if ExtendedKeyUsageOID.SERVER_AUTH in eku:
        return "server"
    return "other"


def common_name(cert: x509.Certificate | x509.CertificateSigningRequest) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def vehicle_name(vin: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "vehicles"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, vin),
            x509.NameAttribute(NameOID.COMMON_NAME, vin),
        ]
    )


class FleetPki:
    """The fleet's certificate authorities, server certificates and revocation lists on disk.

    Layout under `root`: ca/<family>/{ca.crt,ca.key,crl.pem}, server/<family>/{server.crt,
    server.key}, issued/<serial>.crt (every issued leaf, for listing and revocation) and
    ca-bundle.pem (all roots).
    """

    def __init__(self, root: Path | str, *, passphrase: bytes | None = None) -> None:
        self.root = Path(root)
        self.passphrase = passphrase
        self._ca_cache: dict[str, tuple[x509.Certificate, PrivateKey]] = {}

    @classmethod
    def from_settings(cls) -> FleetPki:
        from django.conf import settings

        return cls(settings.PKI_DIR, passphrase=passphrase_from_env())

    # -- paths -----------------------------------------------------------------------------

    def ca_cert_path(self, family: str) -> Path:
        return self.root / "ca" / family / "ca.crt"

    def ca_key_path(self, family: str) -> Path:
        return self.root / "ca" / family / "ca.key"

    def crl_path(self, family: str) -> Path:
        return self.root / "ca" / family / "crl.pem"

    def server_cert_path(self, family: str) -> Path:
        return self.root / "server" / family / "server.crt"

    def server_key_path(self, family: str) -> Path:
        return self.root / "server" / family / "server.key"

    @property
    def ca_bundle_path(self) -> Path:
        return self.root / "ca-bundle.pem"

    @property
    def issued_dir(self) -> Path:
        return self.root / "issued"

    def families(self) -> list[str]:
        """Families whose CA exists."""
        return [f for f in FAMILIES if self.ca_cert_path(f).exists()]

    def server_families(self) -> list[str]:
        return [f for f in self.families() if self.server_cert_path(f).exists()]

    # -- loading ---------------------------------------------------------------------------

    def load_key(self, path: Path) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=self.passphrase)
        except TypeError as exc:
            raise PkiError(f"{path.name}: {exc} (set {PASSPHRASE_ENV})") from None
        except ValueError as exc:
            raise PkiError(f"{path.name}: cannot be loaded: {exc}") from None
        return key  # type: ignore[return-value]

    def ca_cert(self, family: str) -> x509.Certificate:
        path = self.ca_cert_path(validate_family(family))
        if not path.exists():
            raise PkiError(f"family: no {family} CA; run `manage.py pqc_pki init` first")
        return x509.load_pem_x509_certificate(path.read_bytes())

    def ca_certs(self) -> list[x509.Certificate]:
        return [self.ca_cert(f) for f in self.families()]

    def load_crl(self, family: str) -> x509.CertificateRevocationList | None:
        path = self.crl_path(family)
        if not path.exists():
            return None
        return x509.load_pem_x509_crl(path.read_bytes())

    def revoked_serials(self) -> set[int]:
        serials: set[int] = set()
        for family in self.families():
            crl = self.load_crl(family)
            if crl is not None:
                serials.update(r.serial_number for r in crl)
        return serials

    # -- creation --------------------------------------------------------------------------

    def init(
        self,
        *,
        families: Sequence[str] = FAMILIES,
        hostnames: Iterable[str] = ("localhost",),
        force: bool = False,
    ) -> list[str]:
        """Create missing CAs and server certificates; return what was created."""
        created: list[str] = []
        for family in families:
            validate_family(family)
            if force or not self.ca_cert_path(family).exists():
                self._create_ca(family)
                created.append(f"{family} CA")
            if force or not self.server_cert_path(family).exists():
                self.issue_server(family=family, hostnames=hostnames)
                created.append(f"{family} server certificate")
        self._write_bundle()
        return created

    def _create_ca(self, family: str) -> None:
        key = generate_key(family)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"OTA Fleet Root CA {FAMILY_LABELS[family]}"
                ),
            ]
        )
        now = utcnow()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, _hash_for(key))
        )
        _write_private(self.ca_key_path(family), key_to_pem(key, self.passphrase))
        _write_public(self.ca_cert_path(family), cert_to_pem(cert))
        self._write_crl(family, cert, key, revoked=[])

    def _write_bundle(self) -> None:
        _write_public(self.ca_bundle_path, cert_to_pem(*self.ca_certs()))

    def _signing_ca(self, family: str) -> tuple[x509.Certificate, PrivateKey]:
        """The family's CA certificate and key, read once per PKI object.

        Reading and decrypting the key costs more than signing; a bulk issue signs thousands.
        A CA replaced on disk (`init --force`) is picked up by comparing the certificate.
        """
        ca_cert = self.ca_cert(family)
        cached = self._ca_cache.get(family)
        if cached is None or cached[0] != ca_cert:
            cached = (ca_cert, self.load_key(self.ca_key_path(family)))
            self._ca_cache[family] = cached
        return cached

    def _sign_leaf(
        self,
        *,
        family: str,
        subject: x509.Name,
        public_key: PublicKey,
        extensions: list[tuple[x509.ExtensionType, bool]],
        not_before: datetime.datetime,
        not_after: datetime.datetime,
    ) -> tuple[x509.Certificate, x509.Certificate]:
        ca_cert, ca_key = self._signing_ca(family)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                False,
            )
        )
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical)
        cert = builder.sign(ca_key, _hash_for(ca_key))
        _write_public(self.issued_dir / f"{serial_hex(cert.serial_number)}.crt", cert_to_pem(cert))
        return cert, ca_cert

    def issue_server(
        self, *, family: str, hostnames: Iterable[str], days: int = SERVER_DAYS
    ) -> IssuedCertificate:
        """Issue (and install) the server certificate of one family."""
        validate_days(days)
        names: list[str] = list(dict.fromkeys([*hostnames, "localhost"]))
        san: list[x509.GeneralName] = [x509.DNSName(n) for n in names if not _is_ip(n)]
        ips = [n for n in names if _is_ip(n)] + ["127.0.0.1", "::1"]
        san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
        key = generate_key(family)
        now = utcnow()
        cert, ca_cert = self._sign_leaf(
            family=family,
            subject=x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                ]
            ),
            public_key=key.public_key(),
            extensions=[
                (x509.SubjectAlternativeName(san), False),
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
                (_leaf_key_usage(), True),
            ],
            not_before=now - datetime.timedelta(minutes=5),
            not_after=now + datetime.timedelta(days=days),
        )
        _write_private(self.server_key_path(family), key_to_pem(key, self.passphrase))
        _write_public(self.server_cert_path(family), cert_to_pem(cert, ca_cert))
        return IssuedCertificate(cert=cert, chain=(ca_cert,), key=key, family=family)

    def _vehicle_extensions(self, vin: str) -> list[tuple[x509.ExtensionType, bool]]:
        return [
            (
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:vin:{vin}")]),
                False,
            ),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (_leaf_key_usage(), True),
        ]

    def issue_vehicle(
        self,
        vin: str,
        *,
        family: str = "ecdsa-p256",
        days: int = VEHICLE_DAYS,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> IssuedCertificate:
        """Generate a key and a client certificate whose subject CN is the VIN."""
        validate_vin(vin)
        validate_family(family)
        validate_days(days)
        key = generate_key(family)
        start = not_before or utcnow() - datetime.timedelta(minutes=5)
        cert, ca_cert = self._sign_leaf(
            family=family,
            subject=vehicle_name(vin),
            public_key=key.public_key(),
            extensions=self._vehicle_extensions(vin),
            not_before=start,
            not_after=not_after or start + datetime.timedelta(days=days),
        )
        return IssuedCertificate(cert=cert, chain=(ca_cert,), key=key, family=family)

    def sign_csr(self, csr_pem: bytes, *, days: int = VEHICLE_DAYS) -> IssuedCertificate:
        """Sign a vehicle's CSR; the key stays on the vehicle. The CSR's CN must be a VIN."""
        validate_days(days)
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise PkiError(f"csr: not a PEM certificate request: {exc}") from None
        if not csr.is_signature_valid:
            raise PkiError("csr: signature does not verify (proof of possession failed)")
        vin = validate_vin(common_name(csr))
        family = key_family(csr.public_key())  # type: ignore[arg-type]
        start = utcnow() - datetime.timedelta(minutes=5)
        cert, ca_cert = self._sign_leaf(
            family=family,
            subject=vehicle_name(vin),
            public_key=csr.public_key(),  # type: ignore[arg-type]
            extensions=self._vehicle_extensions(vin),
            not_before=start,
            not_after=start + datetime.timedelta(days=days),
        )
        return IssuedCertificate(cert=cert, chain=(ca_cert,), key=None, family=family)

    def issue_fleet(
        self,
        vins: Sequence[str],
        *,
        family: str,
        out_dir: Path,
        days: int = VEHICLE_DAYS,
    ) -> Iterator[IssuedCertificate]:
        """Issue and write one key and certificate per VIN: `out_dir/<VIN>/vehicle.{crt,key}`.

        Yields each certificate once it is on disk, so a caller can show progress and audit in
        batches. The fleet's CA bundle goes once into `out_dir/ca-bundle.pem`.
        """
        validate_family(family)
        validate_days(days)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_public(out_dir / "ca-bundle.pem", cert_to_pem(*self.ca_certs()))
        for vin in vins:
            issued = self.issue_vehicle(vin, family=family, days=days)
            vehicle_dir = out_dir / vin
            vehicle_dir.mkdir(exist_ok=True)
            _write_public(vehicle_dir / "vehicle.crt", cert_to_pem(issued.cert, *issued.chain))
            assert issued.key is not None
            _write_private(vehicle_dir / "vehicle.key", key_to_pem(issued.key, self.passphrase))
            yield issued

    def write_vehicle_bundle(self, issued: IssuedCertificate, out_dir: Path) -> VehicleBundlePaths:
        """Write vehicle.crt (leaf then CA), vehicle.key (0600) and ca-bundle.pem into out_dir.

        When a file cannot be written, the files written so far and the issuing record are
        taken back: a certificate whose key never reached the vehicle must not count as issued.
        """
        paths = VehicleBundlePaths(
            cert=out_dir / "vehicle.crt",
            key=out_dir / "vehicle.key",
            ca_bundle=out_dir / "ca-bundle.pem",
        )
        written: list[Path] = []
        files = [(paths.cert, cert_to_pem(issued.cert, *issued.chain), _write_public)]
        if issued.key is not None:
            files.append((paths.key, key_to_pem(issued.key, self.passphrase), _write_private))
        files.append((paths.ca_bundle, cert_to_pem(*self.ca_certs()), _write_public))
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for path, data, write in files:
                write(path, data)
                written.append(path)
        except OSError as exc:
            for path in [
                *written,
                self.issued_dir / f"{serial_hex(issued.cert.serial_number)}.crt",
            ]:
                path.unlink(missing_ok=True)
            failed = files[len(written)][0]
            raise PkiError(
                f"out: cannot write {failed}: {exc.strerror or exc}; nothing was issued"
            ) from None
        return paths

    # -- revocation and listing ------------------------------------------------------------

    def find_issued(self, serial: int) -> x509.Certificate:
        path = self.issued_dir / f"{serial_hex(serial)}.crt"
        if not path.exists():
            raise PkiError(f"serial: {serial_hex(serial)} was not issued by this PKI")
        return x509.load_pem_x509_certificate(path.read_bytes())

    def revoke(self, serial: int, *, reason: x509.ReasonFlags | None = None) -> x509.Certificate:
        """Add an issued certificate to its CA's CRL; returns the revoked certificate."""
        cert = self.find_issued(serial)
        family = key_family(self._issuer_key_for(cert))
        crl = self.load_crl(family)
        revoked = list(crl) if crl is not None else []
        if any(r.serial_number == serial for r in revoked):
            return cert
        builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(utcnow())
        if reason is not None:
            builder = builder.add_extension(x509.CRLReason(reason), critical=False)
        revoked.append(builder.build())
        ca_key = self.load_key(self.ca_key_path(family))
        self._write_crl(family, self.ca_cert(family), ca_key, revoked=revoked)
        return cert

    def _issuer_key_for(self, cert: x509.Certificate) -> PublicKey:
        for ca in self.ca_certs():
            if ca.subject == cert.issuer:
                return ca.public_key()  # type: ignore[return-value]
        raise PkiError("serial: the issuing CA of this certificate is not in the PKI")

    def _write_crl(
        self,
        family: str,
        ca_cert: x509.Certificate,
        ca_key: PrivateKey,
        *,
        revoked: list[x509.RevokedCertificate],
    ) -> None:
        now = utcnow()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now)
            .next_update(now + datetime.timedelta(days=30))
        )
        for entry in revoked:
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(ca_key, _hash_for(ca_key))
        _write_public(self.crl_path(family), crl.public_bytes(serialization.Encoding.PEM))

    def list_certificates(self) -> list[CertificateInfo]:
        """Every issued leaf certificate with expiry and revocation, soonest expiry first."""
        revoked = self.revoked_serials()
        infos = []
        for path in sorted(self.issued_dir.glob("*.crt")) if self.issued_dir.exists() else []:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            infos.append(
                CertificateInfo(
                    serial=serial_hex(cert.serial_number),
                    kind=certificate_kind(cert),
                    subject=common_name(cert),
                    family=key_family(cert.public_key()),  # type: ignore[arg-type]
                    not_after=cert.not_valid_after_utc,
                    revoked=cert.serial_number in revoked,
                    fingerprint=fingerprint(cert),
                )
            )
        return sorted(infos, key=lambda i: i.not_after)


def parse_shares(text: str, *, name: str) -> list[tuple[str, float]]:
    """A mix such as "ecdsa-p256:60,ml-dsa-65:40" (weights; a bare item weighs 1)."""
    shares: list[tuple[str, float]] = []
    for part in (p.strip() for p in text.split(",")):
        item, _, weight = part.partition(":")
        try:
            value = float(weight.rstrip("%")) if weight else 1.0
        except ValueError:
            raise PkiError(f"{name}: {part!r} is not ITEM or ITEM:WEIGHT") from None
        if not item or value <= 0:
            raise PkiError(f"{name}: {part!r} needs an item and a positive weight")
        shares.append((item, value))
    return shares


def spread_shares(shares: Sequence[tuple[str, float]], count: int) -> list[str]:
    """`count` items in the proportions of `shares`, interleaved (not in blocks), so that any
    slice of the fleet, such as one shard, has about the same mix."""
    total = sum(weight for _, weight in shares)
    given = dict.fromkeys((item for item, _ in shares), 0)
    out = []
    for index in range(count):
        # The item furthest behind its share so far goes next.
        item = max(shares, key=lambda s: s[1] / total * (index + 1) - given[s[0]])[0]
        given[item] += 1
        out.append(item)
    return out


def fleet_vin(index: int, prefix: str = "WFLEET") -> str:
    """The VIN of fleet vehicle `index`: the prefix, then the index zero-padded to 17 characters."""
    return validate_vin(f"{prefix}{index:0{17 - len(prefix)}d}")


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
