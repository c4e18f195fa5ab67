from __future__ import annotations

import datetime
from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import DomainError
from core.filtering import StrictFilterBackend, check_parameters
from core.pagination import KeysetPagination
from core.permissions import IsFleetEngineer, IsOperator, IsVehicle, IsViewer, vehicle_identity
from ecus.models import EcuType, SoftwareChange
from vehicles.api import schema  # noqa: F401  (registers the mutual-TLS security scheme)
from vehicles.api.access import IsVehicleOrViewer, VehicleThrottled, vehicle_for
from vehicles.api.serializers import (
    SavedFilterSerializer,
    SavedFilterWriteSerializer,
    SoftwareChangeSerializer,
    VciSnapshotSerializer,
    VehicleBriefSerializer,
    VehicleRegisterSerializer,
    VehicleSerializer,
    VersionReportSerializer,
)
from vehicles.filters import VehicleFilter, count_limit, filter_vehicles
from vehicles.models import SavedFilter, VciSnapshot, Vehicle
from vehicles.reports import version_report
from vehicles.services import (
    create_saved_filter,
    delete_saved_filter,
    register_vehicle_identity,
    update_saved_filter,
)


class VehicleRegisterView(VehicleThrottled, APIView):
    """A vehicle registers itself (VIN of its certificate), or an operator pre-registers one."""

    permission_classes = [IsVehicle | IsOperator | IsFleetEngineer]

    @extend_schema(
        request=VehicleRegisterSerializer,
        responses={200: VehicleSerializer, 201: VehicleSerializer},
    )
    def post(self, request: Request) -> Response:
        serializer = VehicleRegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        identity = vehicle_identity(request)
        fingerprint = serial = ""
        not_after = None
        if identity is not None:
            if data["vin"] != identity.vin:
                raise PermissionDenied("the VIN must be the one in the client certificate")
            fingerprint = str(identity.tls.get("cert_fingerprint") or "")
            serial = str(identity.tls.get("cert_serial") or "")
            if identity.tls.get("cert_not_after"):
                not_after = datetime.datetime.fromisoformat(identity.tls["cert_not_after"])
        vehicle, created = register_vehicle_identity(
            vin=data["vin"],
            model_name=data["model_name"],
            model_year=data["model_year"],
            vmg_id=data["vmg_id"],
            certificate_fingerprint=fingerprint,
            certificate_serial=serial,
            certificate_not_after=not_after,
            actor=request.user,
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(VehicleSerializer(vehicle).data, status=code)


class VehicleListView(generics.ListAPIView):
    """The fleet for operators: filtered, sorted, paged by cursor, with the total."""

    permission_classes = [IsViewer]
    serializer_class = VehicleBriefSerializer
    filter_backends = [StrictFilterBackend]
    filterset_class = VehicleFilter
    pagination_class = KeysetPagination
    ordering_fields = ("vin", "model_name", "model_year", "status", "created_at")
    default_ordering = "vin"

    def get_queryset(self) -> Any:
        return Vehicle.objects.for_list()

    def get_count_limit(self, request: Request) -> int | None:
        return count_limit(request.query_params)


class VehicleDetailView(VehicleThrottled, APIView):
    permission_classes = [IsVehicleOrViewer]

    @extend_schema(responses=VehicleSerializer)
    def get(self, request: Request, vin: str) -> Response:
        vehicle = vehicle_for(request, vin)
        return Response(VehicleSerializer(vehicle).data)


class VciHistoryView(generics.ListAPIView):
    """The VCI snapshots of a vehicle, newest first."""

    permission_classes = [IsVehicleOrViewer]
    serializer_class = VciSnapshotSerializer

    def get_queryset(self) -> Any:
        vehicle = vehicle_for(self.request, self.kwargs["vin"])
        return VciSnapshot.objects.filter(vehicle=vehicle).order_by("-received_at", "-id")


class SoftwareHistoryView(generics.ListAPIView):
    """Every software change of a vehicle's ECUs, newest first; ?ecu_id= narrows it."""

    permission_classes = [IsVehicleOrViewer]
    serializer_class = SoftwareChangeSerializer

    @extend_schema(parameters=[OpenApiParameter("ecu_id", str, required=False)])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        vehicle = vehicle_for(self.request, self.kwargs["vin"])
        changes = SoftwareChange.objects.filter(vehicle=vehicle).select_related("ecu")
        ecu_id = self.request.query_params.get("ecu_id")
        if ecu_id:
            changes = changes.filter(ecu__ecu_id=ecu_id)
        return changes.order_by("-recorded_at", "-id")


class SavedFilterListView(generics.ListAPIView):
    """Saved fleet queries: viewers read, operators create."""

    serializer_class = SavedFilterSerializer

    def get_permissions(self) -> list[Any]:
        return [IsViewer()] if self.request.method == "GET" else [IsOperator()]

    def get_queryset(self) -> Any:
        return SavedFilter.objects.select_related("created_by").order_by("name", "pk")

    @extend_schema(request=SavedFilterWriteSerializer, responses={201: SavedFilterSerializer})
    def post(self, request: Request) -> Response:
        form = SavedFilterWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        saved = create_saved_filter(actor=request.user, **form.validated_data)
        return Response(SavedFilterSerializer(saved).data, status=status.HTTP_201_CREATED)


class SavedFilterDetailView(APIView):
    """One saved filter: viewers read; operators change or delete it."""

    def get_permissions(self) -> list[Any]:
        return [IsViewer()] if self.request.method == "GET" else [IsOperator()]

    def _saved(self, pk: int) -> SavedFilter:
        return get_object_or_404(SavedFilter.objects.select_related("created_by"), pk=pk)

    @extend_schema(responses=SavedFilterSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(SavedFilterSerializer(self._saved(pk)).data)

    @extend_schema(request=SavedFilterWriteSerializer, responses=SavedFilterSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        form = SavedFilterWriteSerializer(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        saved = update_saved_filter(self._saved(pk), actor=request.user, **form.validated_data)
        return Response(SavedFilterSerializer(saved).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        delete_saved_filter(self._saved(pk), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SavedFilterVehiclesView(VehicleListView):
    """The vehicles a saved filter selects now, paged and sortable like the fleet list."""

    filter_backends: list[Any] = []
    filterset_class = None

    def get_queryset(self) -> Any:
        saved = get_object_or_404(SavedFilter, pk=self.kwargs["pk"])
        check_parameters(self.request, self)
        return filter_vehicles(saved.query, Vehicle.objects.for_list())

    def get_count_limit(self, request: Request) -> int | None:
        return count_limit(get_object_or_404(SavedFilter, pk=self.kwargs["pk"]).query)


class VersionReportView(APIView):
    """How many ECUs of one type run each version, per model, in the fleet or a filtered part."""

    permission_classes = [IsViewer]
    filterset_class = VehicleFilter

    @extend_schema(
        parameters=[OpenApiParameter("ecu", str, required=True, description="ECU type code")],
        responses=VersionReportSerializer,
    )
    def get(self, request: Request) -> Response:
        check_parameters(request, self)
        ecu_code = request.query_params.get("ecu")
        if not ecu_code:
            raise DomainError("the ECU type to report on, e.g. ecu=ECM", field="ecu")
        ecu_type = EcuType.objects.filter(code=ecu_code).first()
        if ecu_type is None:
            raise DomainError(f"no ECU type {ecu_code!r}", field="ecu")
        query = {k: v for k, v in request.query_params.items() if k not in ("ecu", "format")}
        vehicles = filter_vehicles(query) if query else None
        report = version_report(ecu_type, vehicles=vehicles)
        return Response(VersionReportSerializer(report).data)
