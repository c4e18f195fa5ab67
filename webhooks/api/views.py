"""Operator API for webhooks: thin shells over webhooks.services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import DomainError, NotFoundError
from core.permissions import IsOperator
from webhooks import services
from webhooks.api.serializers import (
    DeliverySerializer,
    EndpointChangeSerializer,
    EndpointCreatedSerializer,
    EndpointInputSerializer,
    EndpointSerializer,
)
from webhooks.choices import DeliveryStatus
from webhooks.models import WebhookDelivery, WebhookEndpoint


def _get(model: Any, pk: int, field: str) -> Any:
    found = model.objects.filter(pk=pk).first()
    if found is None:
        raise NotFoundError(f"no such {field.replace('_', ' ')}", field=field)
    return found


class EndpointListView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(responses=EndpointSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(EndpointSerializer(WebhookEndpoint.objects.all(), many=True).data)

    @extend_schema(request=EndpointInputSerializer, responses={201: EndpointCreatedSerializer})
    def post(self, request: Request) -> Response:
        form = EndpointInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        endpoint = services.register_endpoint(actor=request.user, **form.validated_data)
        return Response(EndpointCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetailView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(request=EndpointChangeSerializer, responses=EndpointSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        endpoint = _get(WebhookEndpoint, pk, "endpoint")
        form = EndpointChangeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        changes = dict(form.validated_data)
        if changes.pop("rotate_secret", False):
            changes["secret"] = ""
        changed = services.change_endpoint(endpoint, actor=request.user, **changes)
        serializer = EndpointCreatedSerializer if "secret" in changes else EndpointSerializer
        return Response(serializer(changed).data)


@extend_schema(parameters=[OpenApiParameter("status", enum=DeliveryStatus.values, required=False)])
class DeliveryListView(ListAPIView):
    """Deliveries, newest first, paginated; `?status=` narrows them."""

    permission_classes = [IsOperator]
    serializer_class = DeliverySerializer

    def get_queryset(self) -> Any:
        deliveries = WebhookDelivery.objects.order_by("-created_at")
        wanted = self.request.query_params.get("status")
        if wanted is None:
            return deliveries
        if wanted not in DeliveryStatus.values:
            raise DomainError(f"must be one of {', '.join(DeliveryStatus.values)}", field="status")
        return deliveries.filter(status=wanted)


class DeliveryReplayView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(request=None, responses={202: DeliverySerializer})
    def post(self, request: Request, pk: int) -> Response:
        delivery = services.replay_delivery(
            _get(WebhookDelivery, pk, "delivery"), actor=request.user
        )
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
