"""Login lock-outs (django-axes' access attempts) cleared by an operator, audited."""

from __future__ import annotations

from typing import Any

from axes.models import AccessAttempt
from django.conf import settings
from django.db import transaction

from core.audit import record_event


@transaction.atomic
def clear_lockout(attempt_id: int, *, actor: Any) -> bool:
    """Forget one username-and-address's failed logins so it may sign in again; False if the
    attempt is already gone. The event keeps who allowed it, for whom and from where."""
    attempt = AccessAttempt.objects.select_for_update().filter(pk=attempt_id).first()
    if attempt is None:
        return False
    # axes keeps no username for an attempt that named none.
    username = attempt.username or ""
    record_event(
        action="auth.lockout_cleared",
        actor=actor,
        object_type="user",
        object_id=username[:64],
        details={
            "username": username,
            "client_address": attempt.ip_address,
            "failures": attempt.failures_since_start,
            "locked_out": attempt.failures_since_start >= settings.AXES_FAILURE_LIMIT,
        },
    )
    attempt.delete()
    return True
