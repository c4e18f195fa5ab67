from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "core"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from core import token_admin  # noqa: F401  (replaces knox's unaudited token admin)
        from core.login_audit import on_user_login_failed

        user_login_failed.connect(on_user_login_failed, dispatch_uid="core.login_audit")
