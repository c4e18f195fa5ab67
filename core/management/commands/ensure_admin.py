from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from core.roles import Role


class Command(BaseCommand):
    help = (
        "Make sure an administrator exists: OTA_ADMIN_USERNAME / OTA_ADMIN_PASSWORD from the "
        "environment, or a generated password printed once when no superuser exists yet."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        import environ

        env = environ.Env()
        username = env.str("OTA_ADMIN_USERNAME", default="admin")
        password = env.str("OTA_ADMIN_PASSWORD", default="")
        users = get_user_model()
        existing = users.objects.filter(username=username).first()
        if existing is not None and not password:
            self.stdout.write(f"administrator {username!r} exists")
            return
        if existing is None and not password and users.objects.filter(is_superuser=True).exists():
            self.stdout.write("a superuser exists; set OTA_ADMIN_PASSWORD to create another")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        user = existing or users(username=username)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        from django.contrib.auth.models import Group

        user.groups.set(Group.objects.filter(name__in=[r.value for r in Role]))
        if generated:
            self.stdout.write(
                self.style.SUCCESS(f"administrator {username!r} created, password: {password}")
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(f"administrator {username!r} set from the environment")
            )
