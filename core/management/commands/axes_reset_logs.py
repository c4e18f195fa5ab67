from __future__ import annotations

from core.management.commands._lockouts import PruneCommand


class Command(PruneCommand):
    help = "Reset access log records older than given days (audited)."
    records = "access log"
