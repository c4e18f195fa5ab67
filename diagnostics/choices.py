from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class DiagnosticStatus(models.TextChoices):
    """Aggregate state of a diagnostic request over every ECU it targets."""

    PENDING = "pending", _("Pending")
    SENT = "sent", _("Sent")
    COMPLETED = "completed", _("Completed")
    PARTIAL = "partial", _("Partial")
    TIMED_OUT = "timed_out", _("Timed out")
    FAILED = "failed", _("Failed")


class DiagnosticScope(models.TextChoices):
    ECU = "ecu", _("One ECU")
    ZONE = "zone", _("Every ECU of a zone")


class EcuOutcome(models.TextChoices):
    """What one ECU answered to a diagnostic request."""

    PENDING = "pending", _("Pending")
    POSITIVE = "positive", _("Positive response")
    NEGATIVE = "negative", _("Negative response")
    TIMEOUT = "timeout", _("No answer")


class ControlCommandName(models.TextChoices):
    COLLECT_VCI = "collect_vci", _("Collect VCI")
    COLLECT_READINESS = "collect_readiness", _("Collect readiness")
    START_DOWNLOAD = "start_download", _("Start download")
    ACTIVATE = "activate", _("Activate")
    CANCEL = "cancel", _("Cancel")


class ControlStatus(models.TextChoices):
    """Life of a control command: sent, then acknowledged, then done; or silent past its deadline."""

    SENT = "sent", _("Sent")
    ACCEPTED = "accepted", _("Accepted")
    REJECTED = "rejected", _("Rejected")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    TIMED_OUT = "timed_out", _("Timed out")


# Statuses after which a vehicle's later responses no longer change a command.
CONTROL_FINAL_STATUSES = frozenset(
    {
        ControlStatus.REJECTED,
        ControlStatus.COMPLETED,
        ControlStatus.FAILED,
        ControlStatus.TIMED_OUT,
    }
)


class PresenceState(models.TextChoices):
    ONLINE = "online", _("Online")
    OFFLINE = "offline", _("Offline")
