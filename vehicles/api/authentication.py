"""REST authentication of vehicles by the VIN of their verified client certificate."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions

from core.auth import VehicleIdentity, VehicleUser, tls_info_of
from vehicles.identity import bound_fingerprint, fingerprint_matches
from vehicles.models import Vehicle


class VehicleTLSAuthentication(authentication.BaseAuthentication):
    """Authenticates a vehicle by the VIN of its verified client certificate."""

    def authenticate(self, request: Any) -> tuple[VehicleUser, VehicleIdentity] | None:
        info = tls_info_of(request)
        if not info or not info.get("vin"):
            return None
        vin = str(info["vin"])
        vehicle = Vehicle.objects.filter(vin=vin).first()
        fingerprint = str(info.get("cert_fingerprint") or "")
        if not fingerprint_matches(bound_fingerprint(vehicle), fingerprint):
            raise exceptions.AuthenticationFailed("certificate is not the one bound to this VIN")
        identity = VehicleIdentity(vin=vin, tls=info, vehicle=vehicle)
        return VehicleUser(identity), identity

    def authenticate_header(self, request: Any) -> str:
        return "mTLS"
