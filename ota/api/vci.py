"""POST /api/v1/vehicles/<vin>/vci: a vehicle reports its configuration (ota.vci.record_vci)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import IsVehicle
from ota.vci import record_vci
from vehicles.api.access import VehicleThrottled, vehicle_for
from vehicles.api.serializers import VciResultSerializer, VciSerializer, VciTimestampSerializer


class VciView(VehicleThrottled, APIView):
    """A vehicle submits its configuration (VCI); the answer lists what is outdated."""

    permission_classes = [IsVehicle]

    @extend_schema(request=VciSerializer, responses={201: VciResultSerializer})
    def post(self, request: Request, vin: str) -> Response:
        vehicle = vehicle_for(request, vin)
        VciTimestampSerializer(data=request.data).is_valid(raise_exception=True)
        result = record_vci(vehicle=vehicle, vci=request.data, source="http")
        settled = result.settled_update
        body = {
            "snapshot_id": result.snapshot.pk,
            "received_at": result.snapshot.received_at,
            "changed_ecus": result.changed,
            "outdated": result.outdated,
            "refused": result.refused,
            "settled_update_id": settled.pk if settled else None,
            "settled_update_state": settled.state if settled else None,
        }
        return Response(VciResultSerializer(body).data, status=status.HTTP_201_CREATED)
