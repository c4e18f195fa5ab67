"""GET /api/v1/vehicles/<vin>/update-log: the vehicle's status reports as stored."""

from __future__ import annotations

from typing import Any

from rest_framework import generics, serializers

from ota.models import UpdateReport
from ota.update_log import vehicle_update_log
from vehicles.api.access import IsVehicleOrViewer, vehicle_for


class UpdateLogEntrySerializer(serializers.ModelSerializer):
    update_id = serializers.IntegerField(read_only=True)
    campaign_id = serializers.IntegerField(source="update.campaign_id", read_only=True)

    class Meta:
        model = UpdateReport
        fields = [
            "id",
            "update_id",
            "campaign_id",
            "received_at",
            "source",
            "sequence",
            "report_key",
            "state_before",
            "state_after",
            "outcome",
            "reason",
            "payload",
        ]
        read_only_fields = fields


class VehicleUpdateLogView(generics.ListAPIView):
    """Every status report of one vehicle, over all its updates, newest first: applied, stale
    (older than what the server knew) or refused (an invalid transition, answered 409)."""

    permission_classes = [IsVehicleOrViewer]
    serializer_class = UpdateLogEntrySerializer

    def get_queryset(self) -> Any:
        return vehicle_update_log(vehicle_for(self.request, self.kwargs["vin"]))
