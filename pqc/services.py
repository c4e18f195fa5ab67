from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.db import close_old_connections, transaction
from django.utils import timezone

from pqc.choices import CertificateAction
from pqc.models import CertificateEvent, RevokedCertificate
from pqc.pki import (
    FAMILIES,
    FleetPki,
    IssuedCertificate,
    VehicleBundlePaths,
    common_name,
    key_family,
    parse_serial,
    serial_hex,
)

logger = logging.getLogger(__name__)


def record_vehicle_session(
    *, vin: str, group: str | None, signature_algorithm: str | None, version: str | None
) -> bool:
    """Store the configuration a vehicle's latest handshake negotiated; False if unknown VIN."""
    from vehicles.models import Vehicle

    updated = Vehicle.objects.filter(vin=vin).update(
        tls_group=group or "",
        tls_signature_algorithm=signature_algorithm or "",
        tls_version=version or "",
        tls_seen_at=timezone.now(),
    )
    return updated == 1


def record_vehicle_session_from_listener(identity: dict[str, Any]) -> None:
    """Worker-thread entry point for the listeners: never raises into the reactor."""
    close_old_connections()
    try:
        record_vehicle_session(
            vin=identity["vin"],
            group=identity.get("group"),
            signature_algorithm=identity.get("signature_algorithm"),
            version=identity.get("version"),
        )
    except Exception:
        logger.exception("could not record the TLS session of %s", identity.get("vin"))
    finally:
        close_old_connections()


@transaction.atomic(durable=True)
def initialise_pki(
    *,
    pki: FleetPki,
    actor: str,
    families: Sequence[str] = FAMILIES,
    hostnames: Sequence[str] = ("localhost",),
    force: bool = False,
) -> list[str]:
    """Create the missing CAs and server certificates and audit what was created."""
    created = pki.init(families=families, hostnames=hostnames, force=force)
    if created:
        CertificateEvent.objects.create(
            action=CertificateAction.PKI_INITIALISED,
            actor=actor,
            details={"created": created, "hostnames": list(hostnames)},
        )
    return created


def _audit_issue(action: str, issued: IssuedCertificate, actor: str) -> None:
    CertificateEvent.objects.create(
        action=action,
        actor=actor,
        serial=issued.serial,
        subject=common_name(issued.cert),
        family=issued.family,
        details={
            "fingerprint": issued.fingerprint,
            "not_after": issued.cert.not_valid_after_utc.isoformat(),
        },
    )


@transaction.atomic(durable=True)
def issue_vehicle_certificate(
    *, pki: FleetPki, vin: str, family: str, out_dir: Path, actor: str, days: int | None = None
) -> tuple[IssuedCertificate, VehicleBundlePaths]:
    """Issue a vehicle key and certificate and write the vehicle's PEM bundle."""
    extra = {"days": days} if days else {}
    issued = pki.issue_vehicle(vin, family=family, **extra)
    paths = pki.write_vehicle_bundle(issued, out_dir)
    _audit_issue(CertificateAction.ISSUED, issued, actor)
    return issued, paths


@transaction.atomic(durable=True)
def sign_vehicle_csr(*, pki: FleetPki, csr_pem: bytes, actor: str) -> IssuedCertificate:
    """Certify a key that never leaves the vehicle."""
    issued = pki.sign_csr(csr_pem)
    _audit_issue(CertificateAction.CSR_SIGNED, issued, actor)
    return issued


@transaction.atomic(durable=True)
def revoke_certificate(
    *, pki: FleetPki, serial: str, actor: str, reason: str = ""
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
    return revoked
