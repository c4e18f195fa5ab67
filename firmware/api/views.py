from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

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
from firmware.api.serializers import (
    FirmwareDetailSerializer,
    FirmwareSerializer,
    FirmwareUploadSerializer,
    upload_response,
)
from firmware.api.uploads import LimitedUploadHandler
from firmware.choices import FirmwareStatus
from firmware.models import Firmware
from firmware.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    file_response,
    if_range_allows,
    parse_range,
)

# Django's ASGI handler sends a streamed body in messages of this size and slices (copies)
# any larger piece; pieces of exactly this size pass through uncopied.
_PIECE = 64 * 1024
# Pieces read per worker-thread hop: one hop per MiB instead of one per piece.
_PIECES_PER_READ = 16


def _read_pieces(fh: IO[bytes], remaining: int) -> list[bytes]:
    pieces = []
    for _ in range(_PIECES_PER_READ):
        if remaining <= 0:
            break
        piece = fh.read(min(_PIECE, remaining))
        if not piece:
            break
        remaining -= len(piece)
        pieces.append(piece)
    return pieces


async def read_ahead(fh: IO[bytes], first: int, length: int) -> AsyncIterator[bytes]:
    """Stream `length` bytes from `first`, reading the next MiB while this one is sent.

    Reads run in a worker thread so the event loop keeps serving other vehicles; at most two
    reads (2 MiB) are held per download, and the listener's flow control stops this iterator
    while the vehicle is not reading.
    """
    loop = asyncio.get_running_loop()
    nxt: asyncio.Future[list[bytes]] | None = None
    try:
        await loop.run_in_executor(None, fh.seek, first)
        remaining = length
        nxt = loop.run_in_executor(None, _read_pieces, fh, remaining)
        while True:
            pieces = await nxt
            remaining -= sum(len(piece) for piece in pieces)
            if not pieces:
                break
            nxt = loop.run_in_executor(None, _read_pieces, fh, remaining)
            for piece in pieces:
                yield piece
    finally:
        if nxt is None or nxt.done():
            fh.close()
        else:
            # The client went away while a read runs in its thread: close after it.
            nxt.add_done_callback(lambda done: _close_after(done, fh))


def _close_after(done: asyncio.Future[list[bytes]], fh: IO[bytes]) -> None:
    if not done.cancelled():
        done.exception()  # retrieved, so a failed read is not reported as unhandled
    fh.close()


def serve_ranged(
    request: Request,
    open_file: Callable[[], IO[bytes]],
    *,
    size: int,
    etag: str,
    last_modified: str,
    head: bool,
) -> tuple[HttpResponseBase, ByteRange | None]:
    """The file, or the one range the request asks for (206), streamed; 416 past the end.

    The file is opened only once the range is known to be satisfiable.
    """
    honour = if_range_allows(
        request.headers.get("If-Range"), etag=etag, last_modified=last_modified
    )
    try:
        byte_range = parse_range(request.headers.get("Range"), size) if honour else None
    except RangeNotSatisfiable:
        response = Response(
            {
                "error": {
                    "code": "range_not_satisfiable",
                    "message": "range is past the end",
                    "fields": {"Range": [f"file is {size} bytes"]},
                }
            },
            status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
        )
        response["Content-Range"] = f"bytes */{size}"
        return response, None
    fh = open_file()
    response = file_response(fh, size=size, byte_range=byte_range, head=head)
    if hasattr(request._request, "scope") and not head:
        # Served by the ASGI listener: an async iterator, or Django would drain the whole
        # file into memory first.
        first, length = (byte_range.first, byte_range.length) if byte_range else (0, size)
        response.streaming_content = read_ahead(fh, first, length)
    response["ETag"] = etag
    response["Last-Modified"] = last_modified
    response["Cache-Control"] = "private, no-transform"
    return response, byte_range


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

        def open_image() -> IO[bytes]:
            try:
                return firmware.file.storage.open(firmware.file.name, "rb")
            except OSError:
                raise DomainError(
                    "firmware file is missing from storage", code="unavailable"
                ) from None

        response, _ = serve_ranged(
            request,
            open_image,
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
