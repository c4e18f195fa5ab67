from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class UpdateState(models.TextChoices):
    """States of one vehicle's update record; `queued` means its wave has not been offered yet."""

    QUEUED = "queued", _("Queued")
    OFFERED = "offered", _("Offered")
    DOWNLOADING = "downloading", _("Downloading")
    DOWNLOADED = "downloaded", _("Downloaded")
    VERIFYING = "verifying", _("Verifying")
    INSTALLING = "installing", _("Installing")
    AWAITING_REBOOT = "awaiting_reboot", _("Awaiting reboot")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    ROLLED_BACK = "rolled_back", _("Rolled back")
    CANCELLED = "cancelled", _("Cancelled")


class VmgState(models.IntegerChoices):
    """The OTA state codes a VMG reports."""

    IDLE = 0, _("Idle")
    DOWNLOADING = 1, _("Downloading")
    VERIFYING = 2, _("Verifying")
    INSTALLING = 3, _("Installing")
    READY = 4, _("Ready to reboot")
    ERROR = 5, _("Error")
    COMPLETED = 6, _("Completed")


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SCHEDULED = "scheduled", _("Scheduled")
    RUNNING = "running", _("Running")
    PAUSED = "paused", _("Paused")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")


class WaveStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    ACTIVE = "active", _("Active")
    COMPLETED = "completed", _("Completed")


class ReportSource(models.TextChoices):
    HTTP = "http", _("REST API")
    MQTT = "mqtt", _("MQTT")
    VCI = "vci", _("Vehicle configuration report")
    SYSTEM = "system", _("Server")
