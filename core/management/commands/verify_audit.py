from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.audit import check_chain


class Command(BaseCommand):
    help = "Recompute the audit trail's hash chain; exit non-zero at the first broken event."

    def handle(self, *args: Any, **options: Any) -> None:
        report = check_chain()
        if not report.intact:
            raise CommandError(f"audit chain broken at event {report.broken_id}: {report.reason}")
        last_hash = report.last_hash or "(none)"
        self.stdout.write(f"audit chain intact: {report.count} events, last hash {last_hash}")
