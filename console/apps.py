from __future__ import annotations

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator console: pages and live WebSockets on top of every domain app."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "console"
