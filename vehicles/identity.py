"""Which client certificate may act as a vehicle, and the TLS posture it last arrived with.

The binding rule is one for the REST API and the MQTT front; the TLS posture is written by the
listeners' handshake hook (pqc.server.recording_sessions).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from django.db import close_old_connections
from django.db.models import Case, F, Value, When
from django.utils import timezone

from vehicles.models import Vehicle

logger = logging.getLogger(__name__)


def bound_fingerprint(vehicle: Vehicle | None) -> str:
    return vehicle.certificate_fingerprint if vehicle is not None else ""


def fingerprint_matches(bound: str, cert_fingerprint: str) -> bool:
    """Registration binds a VIN to one certificate; another certificate with the same subject,
    or a connection that names no certificate fingerprint at all, is not that vehicle."""
    return not bound or bound == cert_fingerprint


def certificate_speaks_for(vin: str, cert_fingerprint: str) -> bool:
    """Whether the certificate with `cert_fingerprint` may act as `vin`."""
    bound = (
        Vehicle.objects.filter(vin=vin).values_list("certificate_fingerprint", flat=True).first()
    )
    return fingerprint_matches(bound or "", cert_fingerprint)


def record_tls_session(
    *,
    vin: str,
    group: str | None,
    signature_algorithm: str | None,
    version: str | None,
    cert_fingerprint: str = "",
    cert_not_after: datetime.datetime | None = None,
) -> bool:
    """Store the configuration a vehicle's latest handshake negotiated; False if unknown VIN.

    The certificate's expiry is stored only when it is the certificate the VIN is bound to: the
    fleet's expiry filter must not take another certificate's date for the vehicle's.
    """
    expiry: Any = F("certificate_not_after")
    if cert_fingerprint and cert_not_after is not None:
        expiry = Case(
            When(certificate_fingerprint=cert_fingerprint, then=Value(cert_not_after)),
            default=F("certificate_not_after"),
        )
    updated = Vehicle.objects.filter(vin=vin).update(
        tls_group=group or "",
        tls_signature_algorithm=signature_algorithm or "",
        tls_version=version or "",
        tls_seen_at=timezone.now(),
        certificate_not_after=expiry,
    )
    return updated == 1


def record_tls_session_from_listener(identity: dict[str, Any]) -> None:
    """Worker-thread entry point for the listeners: never raises into the reactor."""
    close_old_connections()
    try:
        not_after = identity.get("cert_not_after")
        record_tls_session(
            vin=identity["vin"],
            group=identity.get("group"),
            signature_algorithm=identity.get("signature_algorithm"),
            version=identity.get("version"),
            cert_fingerprint=str(identity.get("cert_fingerprint") or ""),
            cert_not_after=datetime.datetime.fromisoformat(not_after) if not_after else None,
        )
    except Exception:
        logger.exception("could not record the TLS session of %s", identity.get("vin"))
    finally:
        close_old_connections()
