from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from core.management.commands._lockouts import ResetCommand


class Command(ResetCommand):
    help = "Reset all access attempts and lockouts for given IP addresses (audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ip", nargs="+", type=str)

    def targets(self, options: dict[str, Any]) -> list[tuple[str | None, str | None]]:
        return [(ip, None) for ip in options["ip"]]
