from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from core.management.commands._lockouts import ResetCommand


class Command(ResetCommand):
    help = "Reset all access attempts and lockouts for an IP address and username (audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ip", type=str)
        parser.add_argument("username", type=str)

    def targets(self, options: dict[str, Any]) -> list[tuple[str | None, str | None]]:
        return [(options["ip"], options["username"])]
