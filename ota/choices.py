from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class UpdateState(models.TextChoices):
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
