from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.api import DomainError
from vehicles.seeding import SYNTHETIC_PREFIX, seed_fleet


class Command(BaseCommand):
    help = (
        f"Add a synthetic fleet (VINs {SYNTHETIC_PREFIX}...) with the registry's gateways and "
        "ECUs, in bulk, for load tests and benchmarks. Refuses a database with other vehicles "
        "unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--vehicles", type=int, required=True, help="how many to add")
        parser.add_argument("--batch-size", type=int, default=2000, help="vehicles per transaction")
        parser.add_argument("--seed", type=int, default=0, help="random seed of the spread")
        parser.add_argument(
            "--force", action="store_true", help="also when non-synthetic vehicles exist"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(done: int, total: int, seconds: float) -> None:
            rate = done / seconds if seconds else 0.0
            self.stdout.write(f"  {done}/{total} vehicles, {seconds:.0f} s ({rate:.0f}/s)")
            self.stdout.flush()  # progress shows when piped to a log, too

        try:
            result = seed_fleet(
                vehicles=options["vehicles"],
                batch_size=options["batch_size"],
                seed=options["seed"],
                force=options["force"],
                progress=progress if options["verbosity"] else None,
            )
        except DomainError as exc:
            where = f"--{exc.field.replace('_', '-')}: " if exc.field else ""
            raise CommandError(f"{where}{exc.message}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"added {result.vehicles} vehicles and {result.ecus} ECUs in {result.seconds:.1f} s"
            )
        )
