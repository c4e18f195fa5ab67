from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from diagnostics.services import prune_telemetry


class Command(BaseCommand):
    help = "Delete telemetry history older than --days and beyond --keep messages per vehicle."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=float, default=30.0, help="keep this many days (default 30)"
        )
        parser.add_argument(
            "--keep",
            type=int,
            default=None,
            help="also keep at most this many messages per vehicle",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["days"] < 0:
            raise CommandError("--days must not be negative")
        if options["keep"] is not None and options["keep"] < 0:
            raise CommandError("--keep must not be negative")
        deleted = prune_telemetry(
            older_than=timedelta(days=options["days"]),
            keep_per_vehicle=options["keep"],
            actor="system:prune_telemetry",
        )
        self.stdout.write(f"deleted {deleted} telemetry messages")
