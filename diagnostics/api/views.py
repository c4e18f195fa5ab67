from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import DomainError, NotFoundError
from core.permissions import IsFleetEngineer, IsOperator, IsViewer
from diagnostics.api.serializers import (
    ControlBatchSerializer,
    ControlCommandSerializer,
    ControlSendResultSerializer,
    ControlSendSerializer,
    DiagnosticRequestSerializer,
    DiagnosticSendSerializer,
    InboundDropSerializer,
    TelemetryLatestSerializer,
    TelemetrySampleSerializer,
    TelemetryViewSerializer,
)
from diagnostics.models import ControlCommand, DiagnosticRequest, TelemetryLatest, TelemetrySample
from diagnostics.services import (
    drop_counts,
    send_control_command,
    send_diagnostic_request,
    settle_if_overdue,
    vehicles_for_control,
)
from vehicles.models import Vehicle

MAX_HISTORY = 1000


def _vehicle(vin: str) -> Vehicle:
    vehicle = Vehicle.objects.filter(vin=vin).first()
    if vehicle is None:
        raise NotFoundError(f"no vehicle {vin}", field="vin")
    return vehicle


def _request_for_display(request_id: Any) -> DiagnosticRequest:
    found = DiagnosticRequest.objects.for_display().filter(request_id=request_id).first()
    if found is None:
        raise NotFoundError("no such diagnostic request", field="request_id")
    return found


class DiagnosticSendView(APIView):
    """Send a UDS request to one ECU or a whole zone of a vehicle (answers arrive over MQTT)."""

    permission_classes = [IsOperator | IsFleetEngineer]

    @extend_schema(request=DiagnosticSendSerializer, responses={202: DiagnosticRequestSerializer})
    def post(self, request: Request) -> Response:
        form = DiagnosticSendSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        sent = send_diagnostic_request(
            vehicle=_vehicle(data["vin"]),
            service=data["service"],
            params=data["params"],
            ecu_id=data.get("ecu_id"),
            zone=data.get("zone"),
            requested_by=request.user,
            timeout_ms=data["timeout_ms"],
        )
        body = DiagnosticRequestSerializer(_request_for_display(sent.request_id)).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


class DiagnosticResultView(APIView):
    """A diagnostic request with every ECU's answer so far and the aggregate status."""

    permission_classes = [IsViewer]

    @extend_schema(responses=DiagnosticRequestSerializer)
    def get(self, request: Request, request_id: Any) -> Response:
        settle_if_overdue(request=_request_for_display(request_id))
        return Response(DiagnosticRequestSerializer(_request_for_display(request_id)).data)


class ControlSendView(APIView):
    """Send a control command to a list of vehicles or to every vehicle of a campaign."""

    permission_classes = [IsOperator]

    @extend_schema(request=ControlSendSerializer, responses={202: ControlSendResultSerializer})
    def post(self, request: Request) -> Response:
        form = ControlSendSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        vehicles = vehicles_for_control(vins=data.get("vins"), campaign_id=data.get("campaign_id"))
        commands = send_control_command(
            vehicles=vehicles,
            command=data["command"],
            params=data["params"],
            issued_by=request.user,
            timeout_s=data["timeout_s"],
        )
        batch_id = commands[0].batch_id
        rows = (
            ControlCommand.objects.for_display().filter(batch_id=batch_id).order_by("vehicle__vin")
        )
        body = {
            "batch_id": str(batch_id),
            "commands": ControlCommandSerializer(rows, many=True).data,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


class ControlBatchView(APIView):
    """The commands of one send, with each vehicle's acknowledgement or timeout."""

    permission_classes = [IsViewer]

    @extend_schema(responses=ControlBatchSerializer)
    def get(self, request: Request, batch_id: Any) -> Response:
        rows = (
            ControlCommand.objects.for_display().filter(batch_id=batch_id).order_by("vehicle__vin")
        )
        commands = ControlCommandSerializer(rows, many=True).data
        if not commands:
            raise NotFoundError("no such command batch", field="batch_id")
        counts: dict[str, int] = {}
        for command in commands:
            counts[command["status"]] = counts.get(command["status"], 0) + 1
        return Response({"batch_id": str(batch_id), "counts": counts, "commands": commands})


class TelemetryView(APIView):
    """A vehicle's latest telemetry values and its recent history (?limit=, newest first)."""

    permission_classes = [IsViewer]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 0, "maximum": MAX_HISTORY},
                description="history rows, newest first (default 100)",
            )
        ],
        responses=TelemetryViewSerializer,
    )
    def get(self, request: Request, vin: str) -> Response:
        vehicle = _vehicle(vin)
        try:
            limit = int(request.query_params.get("limit", 100))
        except ValueError:
            limit = -1
        if not 0 <= limit <= MAX_HISTORY:
            raise DomainError(f"limit must be an integer in 0..{MAX_HISTORY}", field="limit")
        latest = TelemetryLatest.objects.filter(vehicle=vehicle).first()
        history = TelemetrySample.objects.filter(vehicle=vehicle).order_by("-reported_at", "-seq")
        return Response(
            {
                "vin": vehicle.vin,
                "is_online": vehicle.is_online,
                "last_seen_at": vehicle.last_seen_at,
                "latest": TelemetryLatestSerializer(latest).data if latest else None,
                "history": TelemetrySampleSerializer(history[:limit], many=True).data,
            }
        )


class InboundDropView(APIView):
    """How many inbound MQTT messages were dropped, per reason."""

    permission_classes = [IsViewer]

    @extend_schema(responses=InboundDropSerializer)
    def get(self, request: Request) -> Response:
        return Response({"dropped": drop_counts()})
