"""The ECU API: /ecus, /ecus/<ecu_id> and /ecus/<ecu_id>/version.

It lives with the vehicle API because every answer is scoped to one vehicle (the caller's
certificate, or ?vin= for operators); the ECU records and services stay in ecus.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import DomainError, NotFoundError
from core.permissions import IsVehicle, vehicle_identity
from ecus.api.serializers import EcuSerializer, EcuVersionSerializer
from ecus.models import Ecu
from ecus.services import report_ecu_version
from vehicles.api.access import IsVehicleOrViewer, VehicleThrottled, registered_vehicle, vehicle_for
from vehicles.models import Vehicle

VIN_PARAMETER = OpenApiParameter(
    "vin", str, required=False, description="required for operators; vehicles see only their own"
)


def _target_vehicle(request: Request) -> Vehicle:
    """Vehicles see their own ECUs; operators name the vehicle with ?vin=."""
    vin = request.query_params.get("vin")
    if vehicle_identity(request) is not None:
        return vehicle_for(request, vin) if vin else registered_vehicle(request)
    if not vin:
        raise DomainError("operators must name the vehicle with ?vin=", field="vin")
    return vehicle_for(request, vin)


def _ecus_of(vehicle: Vehicle) -> Any:
    return Ecu.objects.filter(vehicle=vehicle).select_related(
        "vehicle", "ecu_type", "zonal_gateway"
    )


class EcuListView(VehicleThrottled, generics.ListAPIView):
    """The ECUs of one vehicle; ?zone=ZGW_FRONT and ?ecu_type=ECM narrow the list."""

    permission_classes = [IsVehicleOrViewer]
    serializer_class = EcuSerializer

    @extend_schema(
        parameters=[
            VIN_PARAMETER,
            OpenApiParameter("zone", str, required=False),
            OpenApiParameter("ecu_type", str, required=False),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        ecus = _ecus_of(_target_vehicle(self.request))
        zone = self.request.query_params.get("zone")
        if zone:
            ecus = ecus.filter(zonal_gateway__gateway_id=zone)
        ecu_type = self.request.query_params.get("ecu_type")
        if ecu_type:
            ecus = ecus.filter(ecu_type__code=ecu_type)
        return ecus.order_by("ecu_id")


class EcuDetailView(VehicleThrottled, APIView):
    permission_classes = [IsVehicleOrViewer]

    @extend_schema(parameters=[VIN_PARAMETER], responses=EcuSerializer)
    def get(self, request: Request, ecu_id: str) -> Response:
        ecu = _ecus_of(_target_vehicle(request)).filter(ecu_id=ecu_id).first()
        if ecu is None:
            raise NotFoundError(f"no ECU {ecu_id} on this vehicle", field="ecu_id")
        return Response(EcuSerializer(ecu).data)


class EcuVersionView(VehicleThrottled, APIView):
    """A vehicle reports the software one of its ECUs runs now."""

    permission_classes = [IsVehicle]

    @extend_schema(request=EcuVersionSerializer, responses=EcuSerializer)
    def put(self, request: Request, ecu_id: str) -> Response:
        vehicle = registered_vehicle(request)
        serializer = EcuVersionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report_ecu_version(
            vehicle=vehicle,
            ecu_id=ecu_id,
            sw_version=serializer.validated_data["sw_version"],
            hw_version=serializer.validated_data.get("hw_version"),
            actor=request.user,
        )
        return Response(EcuSerializer(_ecus_of(vehicle).get(ecu_id=ecu_id)).data)
