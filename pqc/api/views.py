from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import IsVehicle, vehicle_identity
from pqc.api.serializers import TlsIdentitySerializer

_TLS_KEYS = ("vin", "group", "signature_algorithm", "version", "cipher", "cert_fingerprint",
             "cert_serial")  # fmt: skip

_NOT_A_VEHICLE = OpenApiResponse(description="no verified vehicle certificate on the connection")


class TlsWhoAmIView(APIView):
    """Echo the identity and configuration of the caller's mutual-TLS connection."""

    permission_classes = [IsVehicle]

    @extend_schema(responses={200: TlsIdentitySerializer, 403: _NOT_A_VEHICLE})
    def get(self, request: Request) -> Response:
        identity = vehicle_identity(request)
        assert identity is not None  # IsVehicle guarantees it
        body: dict[str, Any] = {key: identity.tls.get(key) for key in _TLS_KEYS}
        body["registered"] = identity.vehicle is not None
        return Response(TlsIdentitySerializer(body).data)
