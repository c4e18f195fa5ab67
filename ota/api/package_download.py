"""GET/HEAD /api/v1/ota/package/<id>: a vehicle downloads a zone package, resumable by Range.

The bytes that leave are recorded as the vehicle's update's download evidence (ota.downloads).
"""

from __future__ import annotations

from django.http import HttpResponseBase
from django.utils.http import http_date
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.views import APIView

from core.api import NotFoundError
from core.permissions import IsVehicle, vehicle_identity
from firmware.api.ranged import serve_ranged, stored_file_opener
from firmware.models import ZonePackage
from ota.downloads import DownloadMeter, metered_download
from vehicles.api.authentication import VehicleTLSAuthentication


class PackageDownloadView(APIView):
    """GET /api/v1/ota/package/<id>: a vehicle downloads a zone package, resumable by Range."""

    authentication_classes = [VehicleTLSAuthentication]
    permission_classes = [IsVehicle]

    @extend_schema(
        responses={
            200: OpenApiResponse(description="OTAP package bytes"),
            206: OpenApiResponse(description="the requested byte range of the package"),
        }
    )
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

        response, byte_range = serve_ranged(
            request,
            stored_file_opener(package.file, "package"),
            size=package.size,
            etag=package.etag,
            last_modified=http_date(package.built_at.timestamp()),
            head=head,
        )
        if response.status_code == status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE:
            return response
        if not head and vehicle is not None:
            meter = DownloadMeter(
                vehicle_id=vehicle.pk,
                package_id=package.pk,
                first=byte_range.first if byte_range else 0,
            )
            response.streaming_content = metered_download(
                response.streaming_content, meter, asynchronous=response.is_async
            )
        response["Content-Disposition"] = f'attachment; filename="{package.pk}.otap"'
        return response
