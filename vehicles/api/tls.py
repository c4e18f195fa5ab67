"""GET /api/v1/tls/vehicles/<vin>/session/: the TLS configuration last recorded for a vehicle.

The listener records it at each handshake (vehicles.identity.record_tls_session); the
caller's own connection is echoed by pqc's /tls/whoami/.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import NotFoundError
from core.permissions import IsVehicle, vehicle_identity
from vehicles.models import Vehicle


class VehicleTlsSessionSerializer(serializers.ModelSerializer):
    """The TLS configuration last recorded for a vehicle."""

    class Meta:
        model = Vehicle
        fields = ["vin", "tls_group", "tls_signature_algorithm", "tls_version", "tls_seen_at"]
        read_only_fields = fields


class VehicleTlsSessionView(APIView):
    """The TLS configuration last recorded for a vehicle; a vehicle may read only its own."""

    permission_classes = [IsVehicle]

    @extend_schema(
        responses={
            200: VehicleTlsSessionSerializer,
            403: OpenApiResponse(description="the certificate belongs to another VIN"),
            404: OpenApiResponse(description="the VIN is not a registered vehicle"),
        }
    )
    def get(self, request: Request, vin: str) -> Response:
        identity = vehicle_identity(request)
        assert identity is not None
        if identity.vin != vin:
            raise PermissionDenied("a vehicle certificate may only act for its own VIN")
        vehicle = identity.vehicle
        if vehicle is None:
            raise NotFoundError(f"vehicle {vin} is not registered", field="vin")
        return Response(VehicleTlsSessionSerializer(vehicle).data)
