from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Repository(models.TextChoices):
    IMAGE = "image", _("image repository")
    DIRECTOR = "director", _("director")
