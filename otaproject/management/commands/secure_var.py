from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from otaproject.private_files import repair_private_tree

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Make var/ (OTA_VAR_DIR) private to the server's user: 0700 directories and no group or "
        "other access to any file in it; prints each path it repairs."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            fixes = repair_private_tree(settings.VAR_DIR)
        except OSError as exc:
            raise CommandError(f"OTA_VAR_DIR={settings.VAR_DIR}: {exc}") from exc
        for fix in fixes:
            logger.warning("var permissions repaired: %s", fix)
            self.stdout.write(f"repaired {fix}")
        if not fixes:
            self.stdout.write(f"{settings.VAR_DIR}: all private")
