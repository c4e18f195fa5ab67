"""Which client certificate may act as a vehicle: one rule for the REST API and the MQTT front."""

from __future__ import annotations

from vehicles.models import Vehicle


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
