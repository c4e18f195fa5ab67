from __future__ import annotations

from django.apps import AppConfig


class UptaneConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "uptane"
    verbose_name = "Uptane repositories"
