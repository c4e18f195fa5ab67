from __future__ import annotations

from core.management.commands._lockouts import ResetCommand


class Command(ResetCommand):
    help = "Reset all access attempts and lockouts (audited)."
