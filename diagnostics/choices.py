from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class DiagnosticStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENT = "sent", _("Sent")
    COMPLETED = "completed", _("Completed")
    PARTIAL = "partial", _("Partial")
    TIMED_OUT = "timed_out", _("Timed out")
    FAILED = "failed", _("Failed")
