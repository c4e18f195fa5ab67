from __future__ import annotations

from typing import Any

from django.http import HttpResponseBase
from django.utils.http import http_date
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import DomainError
from core.permissions import IsFleetEngineer, IsViewer
from firmware import services
from firmware.api.ranged import serve_ranged, stored_file_opener
from firmware.api.serializers import (
    FirmwareDetailSerializer,
    FirmwareSerializer,
    FirmwareUploadSerializer,
    upload_response,
)
from firmware.api.uploads import LimitedUploadHandler
from firmware.choices import FirmwareStatus
from firmware.models import Firmware


class FirmwareUploadView(APIView):
    """POST /api/v1/firmware/upload: a fleet engineer (session or token) uploads an image."""

    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [IsFleetEngineer]

    def initialize_request(self, request: Any, *args: Any, **kwargs: Any) -> Request:
        # Refuse an oversized file while it arrives, not after it has filled the disk.
        self._limiter = LimitedUploadHandler(request)
        request.upload_handlers.insert(0, self._limiter)
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(request=FirmwareUploadSerializer, responses={201: OpenApiResponse()})
    def post(self, request: Request) -> Response:
        serializer = FirmwareUploadSerializer(data=request.data)
        if self._limiter.exceeded:
            raise services.PayloadTooLargeError(self._limiter.message, field="file")
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        upload = data["file"]
        result = services.upload_firmware(
            upload,
            ecu_type_code=data["ecu_type"],
            version=data["version"],
            original_filename=upload.name or "",
            size=upload.size,
            hardware_versions=data.get("hardware_versions", []),
            release_notes=data.get("release_notes", ""),
            uploaded_by=request.user,
        )
        body = upload_response(result.firmware, result.same_bytes_as)
        return Response(body, status=status.HTTP_201_CREATED)


FIRMWARE_FILTERS = [
    OpenApiParameter("ecu_type", str, required=False, description="ECU type code, e.g. ECM"),
    OpenApiParameter(
        "hardware_version", str, required=False, description="releases that run on it"
    ),
    OpenApiParameter("version", str, required=False, description="exact version"),
    OpenApiParameter("status", str, required=False, enum=FirmwareStatus.values),
]


class FirmwareViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Firmware releases: viewers list and read them; fleet engineers download and deprecate."""

    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> Any:
        releases = Firmware.objects.select_related("ecu_type").prefetch_related("compatibilities")
        if self.action == "retrieve":
            releases = releases.select_related("uploaded_by").prefetch_related(
                "dependencies__required_ecu_type"
            )
        if self.action == "list":
            releases = _filtered(releases, self.request.query_params)
        return releases.order_by("ecu_type__code", "-version_key", "pk")

    def get_permissions(self) -> list[Any]:
        if self.action in ("list", "retrieve"):
            return [IsViewer()]
        return [IsFleetEngineer()]

    def get_serializer_class(self) -> Any:
        return FirmwareSerializer if self.action == "list" else FirmwareDetailSerializer

    @extend_schema(parameters=FIRMWARE_FILTERS)
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses=FirmwareDetailSerializer)
    @action(detail=True, methods=["post"])
    def deprecate(self, request: Request, pk: str | None = None) -> Response:
        """Withdraw the release from new offers and new campaigns (idempotent)."""
        firmware = services.deprecate_firmware(self.get_object(), actor=request.user)
        return Response(FirmwareDetailSerializer(self.get_queryset().get(pk=firmware.pk)).data)

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(description="the firmware image bytes"),
            206: OpenApiResponse(description="the requested byte range of the image"),
        },
    )
    @action(detail=True, methods=["get"])
    def image(self, request: Request, pk: str | None = None) -> HttpResponseBase:
        """The stored image, streamed; resumable with Range and If-Range."""
        firmware = self.get_object()

        response, _ = serve_ranged(
            request,
            stored_file_opener(firmware.file, "firmware"),
            size=firmware.size,
            etag=f'"{firmware.sha256}"',
            last_modified=http_date(firmware.created_at.timestamp()),
            head=request.method == "HEAD",
        )
        if response.status_code == status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE:
            return response
        filename = f"{firmware.ecu_type.code}-{firmware.version}.bin"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


def _filtered(releases: Any, params: Any) -> Any:
    if params.get("ecu_type"):
        releases = releases.filter(ecu_type__code=params["ecu_type"])
    if params.get("hardware_version"):
        releases = releases.filter(compatibilities__hardware_version=params["hardware_version"])
    if params.get("version"):
        releases = releases.filter(version=params["version"])
    state = params.get("status")
    if state:
        if state not in FirmwareStatus.values:
            raise DomainError(f"one of {', '.join(FirmwareStatus.values)}", field="status")
        releases = releases.filter(status=state)
    return releases
