from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class EventType(models.TextChoices):
    """What an endpoint may subscribe to."""

    CAMPAIGN_PROGRESS = "campaign.progress", _("Campaign progress")
    VEHICLE_UPDATE = "vehicle.update", _("Vehicle update state")
    DIAGNOSTICS_STATUS = "diagnostics.status", _("Diagnostic request status")
    DIAGNOSTICS_RESULT = "diagnostics.result", _("Diagnostic ECU result")


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed (gave up)")
