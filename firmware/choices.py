from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class FirmwareStatus(models.TextChoices):
    AVAILABLE = "available", _("Available")
    DEPRECATED = "deprecated", _("Deprecated")


class SigningKeyStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    RETIRED = "retired", _("Retired (still trusted)")
    REVOKED = "revoked", _("Revoked")
