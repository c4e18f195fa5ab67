from __future__ import annotations

from typing import Any

from django.http import HttpResponseBase
from django.utils.http import http_date
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import DomainError, NotFoundError
from core.auth import VehicleTLSAuthentication
from core.permissions import IsFleetEngineer, IsVehicle, vehicle_identity
from firmware import services
from firmware.api.serializers import FirmwareUploadSerializer, upload_response
from firmware.api.uploads import LimitedUploadHandler
from firmware.models import ZonePackage
from firmware.ranges import RangeNotSatisfiable, file_response, if_range_allows, parse_range


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


class PackageDownloadView(APIView):
    """GET /api/v1/ota/package/<id>: a vehicle downloads a zone package, resumable by Range."""

    authentication_classes = [VehicleTLSAuthentication]
    permission_classes = [IsVehicle]

    @extend_schema(responses={200: OpenApiResponse(description="OTAP package bytes")})
    def get(self, request: Request, package_id: str) -> HttpResponseBase:
        return self._serve(request, package_id, head=False)

    def head(self, request: Request, package_id: str) -> HttpResponseBase:
        return self._serve(request, package_id, head=True)

    def _serve(self, request: Request, package_id: str, *, head: bool) -> HttpResponseBase:
        identity = vehicle_identity(request)
        vehicle = identity.vehicle if identity else None
        package = ZonePackage.objects.for_vehicle(vehicle).filter(pk=package_id).first()
        if package is None:
            # The same answer for "absent" and "not yours": ids of other vehicles' packages
            # must not be confirmable.
            raise NotFoundError("no such package for this vehicle", field="package_id")
        last_modified = http_date(package.built_at.timestamp())
        honour = if_range_allows(
            request.headers.get("If-Range"), etag=package.etag, last_modified=last_modified
        )
        try:
            byte_range = parse_range(request.headers.get("Range"), package.size) if honour else None
        except RangeNotSatisfiable:
            response = Response(
                {
                    "error": {
                        "code": "range_not_satisfiable",
                        "message": "range is past the end",
                        "fields": {"Range": [f"file is {package.size} bytes"]},
                    }
                },
                status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
            )
            response["Content-Range"] = f"bytes */{package.size}"
            return response
        try:
            fh = package.file.storage.open(package.file.name, "rb")
        except OSError:
            raise DomainError("package file is missing from storage", code="unavailable") from None
        response = file_response(
            fh,
            size=package.size,
            byte_range=byte_range,
            head=head,
            # Served by the ASGI listener: stream with an async iterator (see ranges.py).
            asynchronous=hasattr(request._request, "scope"),
        )
        response["ETag"] = package.etag
        response["Last-Modified"] = last_modified
        response["Content-Disposition"] = f'attachment; filename="{package.pk}.otap"'
        response["Cache-Control"] = "private, no-transform"
        return response
