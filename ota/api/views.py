from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from django.shortcuts import get_object_or_404
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import DomainError
from core.filtering import StrictFilterBackend
from core.models import AuditEvent
from core.pagination import KeysetPagination
from core.permissions import IsOperator, IsVehicle, IsViewer
from ota import campaigns as campaign_services
from ota import services
from ota.api.filters import CampaignFilter, CampaignVehicleFilter
from ota.api.renderers import AuditCsvRenderer
from ota.api.serializers import (
    AuditEventSerializer,
    CampaignActionSerializer,
    CampaignDetailSerializer,
    CampaignPauseSerializer,
    CampaignSerializer,
    CampaignWriteSerializer,
    PackageListSerializer,
    PackageRequestSerializer,
    StatusReportSerializer,
    UpdateCheckRequestSerializer,
    UpdateCheckSerializer,
    UpdateSerializer,
)
from ota.choices import ReportSource
from ota.models import Campaign, OtaUpdate
from vehicles.api.access import VehicleThrottled, registered_vehicle, vehicle_for

# Exports are bounded: narrow with ?since=/?until=/?vin= for more.
AUDIT_EXPORT_LIMIT = 100_000


class UpdateCheckView(VehicleThrottled, APIView):
    """The vehicle's current update plan: ECUs in install order, zone packages, sizes, hashes."""

    permission_classes = [IsVehicle]

    @extend_schema(request=UpdateCheckRequestSerializer, responses=UpdateCheckSerializer)
    def post(self, request: Request) -> Response:
        vehicle = registered_vehicle(request)
        form = UpdateCheckRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        vin = form.validated_data.get("vin")
        if vin and vin != vehicle.vin:
            raise PermissionDenied("a vehicle may only check its own updates")
        check = services.check_for_update(vehicle=vehicle)
        update = check.update
        body = {
            "update_available": check.update_available,
            "update_id": update.pk if update else None,
            "campaign_id": update.campaign_id if update else None,
            "state": update.state if update else None,
            "attempt": update.attempts if update else None,
            "next_step": check.next_step,
            "possession_nonce": check.possession_nonce,
            "items": check.items,
            "packages": check.packages,
            "total_size": sum(p["size"] for p in check.packages),
            "refused": check.refused,
        }
        # The stored plan already has the documented shape; re-serializing it field by field
        # would double the cost of the most frequent vehicle request.
        return Response(body)


class PackageRequestView(VehicleThrottled, APIView):
    """Request the zone packages of the open update (all, or one zonal gateway)."""

    permission_classes = [IsVehicle]

    @extend_schema(request=PackageRequestSerializer, responses=PackageListSerializer)
    def post(self, request: Request) -> Response:
        vehicle = registered_vehicle(request)
        serializer = PackageRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        update, packages = services.request_packages(
            vehicle=vehicle,
            update_id=serializer.validated_data.get("update_id"),
            zonal_gateway_id=serializer.validated_data.get("zonal_gateway_id", ""),
        )
        return Response({"update_id": update.pk, "packages": packages})


@functools.cache
def _status_answer() -> UpdateSerializer:
    """One UpdateSerializer whose fields are built once: a ModelSerializer builds its fields from
    the model on every instantiation, a large part of answering the most frequent vehicle
    report. Its to_representation keeps no state between calls, so threads can share it."""
    return UpdateSerializer()


class StatusReportView(VehicleThrottled, APIView):
    """A status report of the vehicle's update; the same service handles the MQTT status topic."""

    permission_classes = [IsVehicle]

    @extend_schema(
        request=StatusReportSerializer,
        responses={
            200: UpdateSerializer,
            409: OpenApiResponse(description="invalid transition (stored and audited)"),
        },
    )
    def post(self, request: Request) -> Response:
        vehicle = registered_vehicle(request)
        StatusReportSerializer(data=request.data).is_valid(raise_exception=True)
        update = services.record_status_report(
            vehicle=vehicle, report=request.data, source=ReportSource.HTTP
        )
        # The record the service saved, with its vehicle and wave: no second read of the row.
        return Response(_status_answer().to_representation(update))


def _campaigns_for_display() -> Any:
    return Campaign.objects.prefetch_related("waves", "firmware__ecu_type").order_by("-created_at")


class CampaignViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Campaigns: viewers read; operators create, edit drafts and drive them."""

    # Ids are numbers: anything else is not a campaign route (404), never a lookup that fails.
    lookup_value_regex = r"[0-9]+"
    serializer_class = CampaignSerializer
    filter_backends = [StrictFilterBackend]
    pagination_class = KeysetPagination

    # The list and the campaign's vehicles page by key; each sorts on its own columns.
    @property
    def filterset_class(self) -> Any:
        return CampaignVehicleFilter if self.action == "vehicles" else CampaignFilter

    @property
    def ordering_fields(self) -> tuple[str, ...]:
        if self.action == "vehicles":
            return ("id", "updated_at")
        return ("created_at", "name", "status", "id")

    @property
    def default_ordering(self) -> str:
        return "id" if self.action == "vehicles" else "-created_at"

    def filter_queryset(self, queryset: Any) -> Any:
        if self.action not in ("list", "vehicles"):
            return queryset  # one campaign by id: the list's filters do not apply
        return super().filter_queryset(queryset)

    def get_queryset(self) -> Any:
        if self.action == "vehicles":
            updates = OtaUpdate.objects.filter(campaign_id=self.kwargs.get("pk"))
            return updates.select_related("vehicle", "wave")
        if self.action not in ("list", "retrieve"):
            return Campaign.objects.all()  # actions load what they render themselves
        return _campaigns_for_display()

    def get_permissions(self) -> list[Any]:
        if self.action in ("list", "retrieve", "vehicles"):
            return [IsViewer()]
        return [IsOperator()]

    def get_serializer_class(self) -> Any:
        if self.action in ("create", "update", "partial_update"):
            return CampaignWriteSerializer
        if self.action in ("retrieve",):
            return CampaignDetailSerializer
        return CampaignSerializer

    def _detail(self, campaign: Campaign, code: int = status.HTTP_200_OK) -> Response:
        campaign = _campaigns_for_display().get(pk=campaign.pk)
        context = {"counts": campaign_services.campaign_counts(campaign.pk)}
        return Response(CampaignDetailSerializer(campaign, context=context).data, status=code)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._detail(self.get_object())

    @extend_schema(request=CampaignWriteSerializer, responses={201: CampaignDetailSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = CampaignWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        campaign = campaign_services.create_campaign(
            operator=request.user, firmware_ids=data.pop("firmware_ids"), **data
        )
        return self._detail(campaign, status.HTTP_201_CREATED)

    @extend_schema(request=CampaignWriteSerializer, responses=CampaignDetailSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        campaign = self.get_object()
        partial = kwargs.get("partial", False)
        serializer = CampaignWriteSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        campaign = campaign_services.update_campaign(
            campaign, operator=request.user, firmware_ids=data.pop("firmware_ids", None), **data
        )
        return self._detail(campaign)

    @extend_schema(request=CampaignWriteSerializer, responses=CampaignDetailSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().partial_update(request, *args, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        campaign_services.delete_campaign(self.get_object(), operator=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _accepted(self, campaign: Campaign, detail: str) -> Response:
        body = {"id": campaign.pk, "status": campaign.status, "detail": detail}
        return Response(CampaignActionSerializer(body).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: CampaignActionSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        campaign = campaign_services.start_campaign(self.get_object(), operator=request.user)
        return self._accepted(campaign, f"scheduled for {campaign.start_at.isoformat()}")

    @extend_schema(request=CampaignPauseSerializer, responses={202: CampaignActionSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        form = CampaignPauseSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        campaign = campaign_services.pause_campaign(
            self.get_object(), operator=request.user, reason=form.validated_data.get("reason", "")
        )
        return self._accepted(campaign, campaign.pause_reason)

    @extend_schema(request=None, responses={202: CampaignActionSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        campaign = campaign_services.resume_campaign(self.get_object(), operator=request.user)
        return self._accepted(campaign, "resumed")

    @extend_schema(request=None, responses={202: CampaignActionSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        campaign = campaign_services.cancel_campaign(self.get_object(), operator=request.user)
        return self._accepted(campaign, "cancelled")

    @extend_schema(request=None, responses={202: CampaignActionSerializer})
    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        count = campaign_services.retry_failed(campaign, operator=request.user)
        campaign.refresh_from_db()
        return self._accepted(campaign, f"{count} vehicles queued again")

    @extend_schema(responses=UpdateSerializer(many=True))
    @action(detail=True, methods=["get"])
    def vehicles(self, request: Request, pk: str | None = None) -> Response:
        """The per-vehicle update records of the campaign, filtered, paged by key."""
        get_object_or_404(Campaign, pk=pk)
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(UpdateSerializer(page, many=True).data)


class VehicleUpdatesView(generics.ListAPIView):
    """Every update record of one vehicle, newest first."""

    serializer_class = UpdateSerializer

    def get_permissions(self) -> list[Any]:
        from vehicles.api.access import IsVehicleOrViewer

        return [IsVehicleOrViewer()]

    def get_queryset(self) -> Any:
        vehicle = vehicle_for(self.request, self.kwargs["vin"])
        return (
            OtaUpdate.objects.filter(vehicle=vehicle)
            .select_related("vehicle", "wave")
            .order_by("-created_at", "-id")
        )


def _utc_instant(text: str, *, field: str) -> datetime:
    """An ISO 8601 time in UTC (a time without an offset is taken as UTC).

    PostgreSQL keeps offsets of at most 15:59 where Python reads up to 23:59, so the query
    gets UTC; a time that UTC puts before year 1 or after 9999 is refused.
    """
    try:
        moment = parse_datetime(text)
    except ValueError:  # well-formed but impossible, such as month 13
        moment = None
    if moment is None:
        raise DomainError("an ISO 8601 time", field=field)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise DomainError("a time within years 1 to 9999 in UTC", field=field) from None


def _audit_events(request: Request) -> Any:
    events = AuditEvent.objects.order_by("id")
    params = request.query_params
    for name, lookup in (("since", "created_at__gte"), ("until", "created_at__lt")):
        if params.get(name):
            events = events.filter(**{lookup: _utc_instant(params[name], field=name)})
    if params.get("vin"):
        events = events.filter(vehicle_vin=params["vin"])
    if params.get("action"):
        events = events.filter(action__startswith=params["action"])
    return events


AUDIT_FILTERS = [
    OpenApiParameter("since", str, required=False, description="ISO 8601, inclusive"),
    OpenApiParameter("until", str, required=False, description="ISO 8601, exclusive"),
    OpenApiParameter("vin", str, required=False),
    OpenApiParameter("action", str, required=False, description="prefix, e.g. campaign."),
]


class AuditEventListView(generics.ListAPIView):
    """The audit trail, oldest first, paginated."""

    permission_classes = [IsViewer]
    serializer_class = AuditEventSerializer

    @extend_schema(parameters=AUDIT_FILTERS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        return _audit_events(self.request)


class AuditExportView(APIView):
    """The audit trail as one CSV or JSON document (?format=csv|json), for R156 evidence."""

    permission_classes = [IsViewer]
    renderer_classes = [JSONRenderer, AuditCsvRenderer]

    @extend_schema(
        parameters=[*AUDIT_FILTERS, OpenApiParameter("format", str, enum=["json", "csv"])],
        responses={
            (200, "application/json"): AuditEventSerializer(many=True),
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR, description="the same rows as CSV"
            ),
        },
    )
    def get(self, request: Request) -> Response:
        events = _audit_events(request)[:AUDIT_EXPORT_LIMIT]
        response = Response(AuditEventSerializer(events, many=True).data)
        extension = "csv" if request.accepted_renderer.format == "csv" else "json"
        response["Content-Disposition"] = f'attachment; filename="audit.{extension}"'
        return response
