from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class UpdatePriority(models.IntegerChoices):
    CRITICAL = 1, _("Critical")
    HIGH = 2, _("High")
    NORMAL = 3, _("Normal")
    LOW = 4, _("Low")
