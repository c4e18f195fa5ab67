"""Each vehicle's update log: every status report it sent, as stored (ota.models.UpdateReport),
whether it moved the update, was stale or was refused."""

from __future__ import annotations

from django.db.models import QuerySet

from ota.models import UpdateReport
from vehicles.models import Vehicle


def vehicle_update_log(vehicle: Vehicle) -> QuerySet[UpdateReport]:
    """The vehicle's status reports over all its updates, newest first."""
    return (
        UpdateReport.objects.filter(update__vehicle=vehicle)
        .select_related("update")
        .order_by("-received_at", "-id")
    )
