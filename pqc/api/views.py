from __future__ import annotations

from typing import Any

from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import NotFoundError
from core.permissions import IsVehicle, vehicle_identity

_TLS_KEYS = ("vin", "group", "signature_algorithm", "version", "cipher", "cert_fingerprint",
             "cert_serial")  # fmt: skip


class TlsWhoAmIView(APIView):
    """Echo the identity and configuration of the caller's mutual-TLS connection."""

    permission_classes = [IsVehicle]

    def get(self, request: Request) -> Response:
        identity = vehicle_identity(request)
        assert identity is not None  # IsVehicle guarantees it
        body: dict[str, Any] = {key: identity.tls.get(key) for key in _TLS_KEYS}
        body["registered"] = identity.vehicle is not None
        return Response(body)


class VehicleTlsSessionView(APIView):
    """The TLS configuration last recorded for a vehicle; a vehicle may read only its own."""

    permission_classes = [IsVehicle]

    def get(self, request: Request, vin: str) -> Response:
        identity = vehicle_identity(request)
        assert identity is not None
        if identity.vin != vin:
            raise PermissionDenied("a vehicle certificate may only act for its own VIN")
        vehicle = identity.vehicle
        if vehicle is None:
            raise NotFoundError(f"vehicle {vin} is not registered", field="vin")
        return Response(
            {
                "vin": vehicle.vin,
                "tls_group": vehicle.tls_group,
                "tls_signature_algorithm": vehicle.tls_signature_algorithm,
                "tls_version": vehicle.tls_version,
                "tls_seen_at": vehicle.tls_seen_at,
            }
        )
