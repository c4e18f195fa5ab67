from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.api import DomainError
from uptane import services
from uptane.models import OnlineKey

ACTOR = "system:uptane"


class Command(BaseCommand):
    help = (
        "Uptane repositories: init (create the online keys and the director's first root), "
        "rotate-director-key ROLE (revoke and replace a director role's keys), roots --out DIR "
        "(the current roots to provision vehicles with), keys (list)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=["init", "rotate-director-key", "roots", "keys"])
        parser.add_argument("role", nargs="?", help="with rotate-director-key: the role")
        parser.add_argument("--out", type=Path, help="with roots: where to write them")

    def handle(self, *args: Any, action: str, role: str | None, **options: Any) -> None:
        try:
            if action == "init":
                created = services.create_online_keys(actor=ACTOR)
                self.stdout.write(f"created {len(created)} online keys")
            elif action == "roots":
                if options["out"] is None:
                    raise CommandError("roots needs --out DIR")
                for path in services.export_roots(options["out"]):
                    self.stdout.write(f"wrote {path}")
            elif action == "rotate-director-key":
                root = services.rotate_director_key(role=role or "", actor=ACTOR)
                self.stdout.write(f"director root v{root.signed.version} names the new keys")
        except DomainError as exc:
            raise CommandError(exc.message) from None
        for key in OnlineKey.objects.filter(revoked_at=None):
            self.stdout.write(f"{key.repository:<9} {key.role:<10} {key.algorithm:<11} {key.keyid}")
