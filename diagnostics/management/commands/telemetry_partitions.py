from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from diagnostics.services import ensure_telemetry_partitions
from diagnostics.services.telemetry import TELEMETRY_DAYS_AHEAD


class Command(BaseCommand):
    help = (
        "Attach the telemetry history's day tables from today to --days-ahead days on "
        "(PostgreSQL; runota does it hourly)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days-ahead", type=int, default=TELEMETRY_DAYS_AHEAD)

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0 <= options["days_ahead"] <= 366:
            raise CommandError("--days-ahead must be between 0 and 366")
        if connection.vendor != "postgresql":
            self.stdout.write(
                f"telemetry history is one table on {connection.vendor}: nothing to do"
            )
            return
        created = ensure_telemetry_partitions(days_ahead=options["days_ahead"])
        self.stdout.write(f"created {created} day tables of telemetry history")
