from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.api import DomainError
from firmware import services

ACTOR = "system:signing_keys"


class Command(BaseCommand):
    help = (
        "Manage the hybrid ML-DSA-65 + ECDSA-P256 package signing keys: generate, rotate, "
        "sync (record keys found in the key directory), list."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=["generate", "rotate", "sync", "list"])
        parser.add_argument("--name", default=None, help="key name (default: a UTC timestamp)")
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="with generate: do nothing when an active key exists (for setup scripts)",
        )

    def handle(self, *args: Any, action: str, name: str | None, **options: Any) -> None:
        try:
            if action == "generate" and options["if_missing"] and services.has_active_signing_key():
                self.stdout.write("an active signing key exists; nothing generated")
            elif action == "generate":
                key = services.generate_signing_key(name=name, actor=ACTOR)
                self.stdout.write(f"generated {key.name}")
            elif action == "rotate":
                key = services.rotate_signing_key(name=name, actor=ACTOR)
                self.stdout.write(f"rotated: {key.name} is now active")
            elif action == "sync":
                services.sync_signing_keys(actor=ACTOR)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        for key in services.list_signing_keys():
            self.stdout.write(
                f"{key.name:<24} {key.status:<8} ML-DSA-65 {key.mldsa_key_id}  "
                f"ECDSA-P256 {key.ecdsa_key_id}  {key.created_at:%Y-%m-%d %H:%M}Z"
            )
        self.stdout.write(f"trust bundle: {services.trust_bundle_path()}")
