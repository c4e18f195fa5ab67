"""The shared shape of the audited replacements of django-axes' reset commands.

django-axes ships `axes_reset*` commands that delete lock-outs and login records without a
word in the audit trail; core comes before axes in INSTALLED_APPS, so `manage.py` runs these
instead, each a thin shell over core.lockouts with the same arguments and output.
"""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.lockouts import prune_login_records, reset_lockouts


class ResetCommand(BaseCommand):
    """Reset the attempts matching each (address, user name) pair `targets` returns."""

    def targets(self, options: dict[str, Any]) -> list[tuple[str | None, str | None]]:
        return [(None, None)]

    def handle(self, *args: Any, **options: Any) -> None:
        count = sum(
            reset_lockouts(
                actor=f"system:{self.name}",
                ip_address=ip,
                username=username,
                os_user=getpass.getuser(),
            )
            for ip, username in self.targets(options)
        )
        self.stdout.write(f"{count} attempts removed." if count else "No attempts found.")

    @property
    def name(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]


class PruneCommand(BaseCommand):
    records = "access log"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--age", type=int, default=30, help="Maximum age for records to keep in days"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = prune_login_records(
                records=self.records,
                older_than_days=options["age"],
                actor=f"system:{type(self).__module__.rsplit('.', 1)[-1]}",
                os_user=getpass.getuser(),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{count} logs removed." if count else "No logs found.")
