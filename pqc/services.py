from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from django.db import transaction

from core.audit import record_event
from pqc.choices import CertificateAction
from pqc.models import CertificateEvent, RevokedCertificate
from pqc.pki import (
    FAMILIES,
    FleetPki,
    IssuedCertificate,
    VehicleBundlePaths,
    common_name,
    fleet_vin,
    key_family,
    parse_serial,
    serial_hex,
    validate_family,
)

logger = logging.getLogger(__name__)


@transaction.atomic(durable=True)
def initialise_pki(
    *,
    pki: FleetPki,
    actor: str,
    families: Sequence[str] = FAMILIES,
    hostnames: Sequence[str] = ("localhost",),
    force: bool = False,
    os_user: str = "",
) -> list[str]:
    """Create the missing CAs and server certificates and audit what was created."""
    created = pki.init(families=families, hostnames=hostnames, force=force)
    if created:
        details = {"created": created, "hostnames": list(hostnames), "force": force}
        CertificateEvent.objects.create(
            action=CertificateAction.PKI_INITIALISED, actor=actor, details=details
        )
        record_event(
            action=f"certificate.{CertificateAction.PKI_INITIALISED.value}",
            actor=actor,
            object_type="pki",
            details={**details, "os_user": os_user},
        )
    return created


def _audit_issue(
    action: CertificateAction, issued: IssuedCertificate, actor: str, os_user: str
) -> None:
    vin = common_name(issued.cert)
    details = {
        "fingerprint": issued.fingerprint,
        "not_after": issued.cert.not_valid_after_utc.isoformat(),
    }
    CertificateEvent.objects.create(
        action=action,
        actor=actor,
        serial=issued.serial,
        subject=vin,
        family=issued.family,
        details=details,
    )
    record_event(
        action=f"certificate.{action.value}",
        actor=actor,
        vehicle_vin=vin,
        object_type="certificate",
        object_id=issued.serial,
        details={**details, "family": issued.family, "os_user": os_user},
    )


@transaction.atomic(durable=True)
def issue_vehicle_certificate(
    *,
    pki: FleetPki,
    vin: str,
    family: str,
    out_dir: Path,
    actor: str,
    days: int | None = None,
    os_user: str = "",
) -> tuple[IssuedCertificate, VehicleBundlePaths]:
    """Issue a vehicle key and certificate and write the vehicle's PEM bundle."""
    extra = {"days": days} if days else {}
    issued = pki.issue_vehicle(vin, family=family, **extra)
    paths = pki.write_vehicle_bundle(issued, out_dir)
    _audit_issue(CertificateAction.ISSUED, issued, actor, os_user)
    return issued, paths


# Certificates audited per transaction by a bulk issue: the audit chain's head is locked for
# one batch at a time, not for the whole run.
FLEET_AUDIT_BATCH = 500


def issue_fleet_certificates(
    *,
    pki: FleetPki,
    families: Sequence[str],
    out_dir: Path,
    actor: str,
    vin_prefix: str = "WFLEET",
    days: int | None = None,
    os_user: str = "",
    progress: Callable[[int], None] = lambda done: None,
) -> Path:
    """Issue one key and certificate per vehicle, vehicle `i` of family `families[i]`.

    Writes `out_dir/<VIN>/vehicle.{crt,key}`, `out_dir/ca-bundle.pem` and the manifest
    `out_dir/fleet.json` (VIN and family of each vehicle, in fleet order); returns the manifest
    path. Each certificate is audited like `issue_vehicle_certificate`.
    """
    extra = {"days": days} if days else {}
    vins = [fleet_vin(index, vin_prefix) for index in range(len(families))]
    by_family: dict[str, list[str]] = {}
    for vin, family in zip(vins, families, strict=True):
        by_family.setdefault(validate_family(family), []).append(vin)
    pending: list[IssuedCertificate] = []
    done = 0
    for family, family_vins in by_family.items():
        for issued in pki.issue_fleet(family_vins, family=family, out_dir=out_dir, **extra):
            pending.append(issued)
            if len(pending) == FLEET_AUDIT_BATCH:
                _audit_batch(pending, actor, os_user)
                done += len(pending)
                pending = []
                progress(done)
    _audit_batch(pending, actor, os_user)
    progress(done + len(pending))
    manifest = out_dir / "fleet.json"
    vehicles = [{"vin": vin, "family": family} for vin, family in zip(vins, families, strict=True)]
    manifest.write_text(json.dumps({"vehicles": vehicles}, indent=0))
    return manifest


@transaction.atomic(durable=True)
def _audit_batch(batch: list[IssuedCertificate], actor: str, os_user: str) -> None:
    for issued in batch:
        _audit_issue(CertificateAction.ISSUED, issued, actor, os_user)


@transaction.atomic(durable=True)
def sign_vehicle_csr(
    *, pki: FleetPki, csr_pem: bytes, actor: str, os_user: str = ""
) -> IssuedCertificate:
    """Certify a key that never leaves the vehicle."""
    issued = pki.sign_csr(csr_pem)
    _audit_issue(CertificateAction.CSR_SIGNED, issued, actor, os_user)
    return issued


@transaction.atomic(durable=True)
def revoke_certificate(
    *, pki: FleetPki, serial: str, actor: str, reason: str = "", os_user: str = ""
) -> RevokedCertificate:
    """Put a certificate on its CA's CRL so every listener refuses it from the next handshake."""
    number = parse_serial(serial)
    cert = pki.revoke(number)
    family = key_family(cert.public_key())  # type: ignore[arg-type]
    revoked, created = RevokedCertificate.objects.get_or_create(
        serial=serial_hex(number),
        defaults={
            "subject": common_name(cert),
            "family": family,
            "reason": reason,
            "revoked_by": actor,
        },
    )
    if created:
        CertificateEvent.objects.create(
            action=CertificateAction.REVOKED,
            actor=actor,
            serial=revoked.serial,
            subject=revoked.subject,
            family=family,
            details={"reason": reason},
        )
        record_event(
            action=f"certificate.{CertificateAction.REVOKED.value}",
            actor=actor,
            vehicle_vin=revoked.subject,
            object_type="certificate",
            object_id=revoked.serial,
            details={"family": family, "reason": reason, "os_user": os_user},
        )
    return revoked
