from __future__ import annotations

import getpass
import secrets
from typing import Any

import environ
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.accounts import ensure_administrator


class Command(BaseCommand):
    help = (
        "Make sure an administrator exists: OTA_ADMIN_USERNAME / OTA_ADMIN_PASSWORD from the "
        "environment, or a generated password printed once when no superuser exists yet."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        env = environ.Env()
        username = env.str("OTA_ADMIN_USERNAME", default="admin")
        password = env.str("OTA_ADMIN_PASSWORD", default="")
        users = get_user_model()
        try:
            users.username_validator(username)
        except ValidationError as exc:
            raise CommandError(f"OTA_ADMIN_USERNAME is refused: {' '.join(exc.messages)}") from None
        if not password and users.objects.filter(username=username).exists():
            self.stdout.write(f"administrator {username!r} exists")
            return
        if not password and users.objects.filter(is_superuser=True).exists():
            self.stdout.write("a superuser exists; set OTA_ADMIN_PASSWORD to create another")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        try:
            ensure_administrator(
                username=username,
                password=password,
                password_source="generated" if generated else "environment",
                actor="system:ensure_admin",
                os_user=getpass.getuser(),
            )
        except ValidationError as exc:
            raise CommandError(f"OTA_ADMIN_PASSWORD is refused: {' '.join(exc.messages)}") from None
        if generated:
            self.stdout.write(
                self.style.SUCCESS(f"administrator {username!r} created, password: {password}")
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(f"administrator {username!r} set from the environment")
            )
