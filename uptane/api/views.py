from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import DomainError
from core.permissions import IsFleetEngineer, IsVehicle, IsViewer
from uptane import services
from uptane.choices import Repository
from vehicles.api.access import VehicleThrottled, registered_vehicle

METADATA_RESPONSE = {200: OpenApiResponse(OpenApiTypes.OBJECT, description="signed TUF metadata")}


def _metadata_response(file: services.MetadataFile) -> HttpResponse:
    # The exact signed bytes: re-encoding them would still verify, but serving what was
    # stored keeps hashes in snapshot and timestamp meaningful byte for byte.
    response = HttpResponse(file.body, content_type="application/json")
    response["ETag"] = f'"{file.sha256}"'
    response["Cache-Control"] = "no-cache"
    return response


class ImageMetadataView(VehicleThrottled, APIView):
    """GET /api/v1/uptane/image/<name>.json: the image repository, the same for every vehicle."""

    permission_classes = [IsVehicle | IsViewer]

    @extend_schema(responses=METADATA_RESPONSE)
    def get(self, request: Request, name: str) -> HttpResponse:
        return _metadata_response(services.metadata_file(Repository.IMAGE, name))


class DirectorMetadataView(VehicleThrottled, APIView):
    """GET /api/v1/uptane/director/<name>.json: the director's metadata for the calling vehicle."""

    permission_classes = [IsVehicle]

    @extend_schema(responses=METADATA_RESPONSE)
    def get(self, request: Request, name: str) -> HttpResponse:
        vehicle = registered_vehicle(request)
        return _metadata_response(
            services.metadata_file(Repository.DIRECTOR, name, vehicle=vehicle)
        )


class OnlineKeysView(APIView):
    """GET /api/v1/uptane/image/online-keys: the public keys the release root must name."""

    permission_classes = [IsFleetEngineer]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(services.online_public_keys())


class TargetsDraftView(APIView):
    """GET /api/v1/uptane/image/targets-draft: unsigned targets of the uploaded firmware."""

    permission_classes = [IsFleetEngineer]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(services.targets_draft())


class MetadataUploadView(APIView):
    """POST /api/v1/uptane/image/upload/<role>: root or targets metadata signed offline."""

    permission_classes = [IsFleetEngineer]

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request, role: str) -> Response:
        # The raw body: the signatures cover the "signed" object, parsed from these bytes.
        data: Any = request.body
        if not data:
            raise DomainError("send the signed metadata as the JSON body", field="metadata")
        if role == "root":
            row = services.install_image_root(data=data, actor=request.user)
        else:
            row = services.install_image_targets(data=data, role=role, actor=request.user)
        body = {"role": row.role, "version": row.version, "sha256": row.sha256}
        return Response(body, status=status.HTTP_201_CREATED)
