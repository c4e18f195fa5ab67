from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ecus.registry import RegistryError, load_registry_file
from ecus.services import import_registry


class Command(BaseCommand):
    help = "Validate and import the ECU registry (zones, ECU types, ECU slots); safe to run again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", default=str(settings.ECU_REGISTRY_FILE))

    def handle(self, *args: Any, path: str, **options: Any) -> None:
        try:
            registry = load_registry_file(Path(path))
        except RegistryError as exc:
            raise CommandError(f"registry not imported: {exc}") from exc

        def progress(done: int, total: int) -> None:
            if done % 25 == 0 or done == total:
                self.stdout.write(f"  ECUs {done}/{total}")

        summary = import_registry(
            registry,
            actor="system:import_registry",
            os_user=getpass.getuser(),
            progress=progress if options["verbosity"] else None,
        )
        for kind in ("types", "zones", "ecus"):
            self.stdout.write(
                f"{kind}: {summary.created[kind]} created, {summary.updated[kind]} updated, "
                f"{summary.unchanged[kind]} unchanged"
            )
        self.stdout.write(
            self.style.SUCCESS("registry imported" if summary.changed else "registry unchanged")
        )
