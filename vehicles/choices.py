from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class VehicleStatus(models.TextChoices):
    REGISTERED = "registered", _("Registered")
    ACTIVE = "active", _("Active")
    UPDATING = "updating", _("Updating")
    DECOMMISSIONED = "decommissioned", _("Decommissioned")
