"""Login lock-outs (django-axes' access attempts) cleared by an operator, and django-axes' login
records pruned, audited."""

from __future__ import annotations

import datetime
from typing import Any

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from axes.utils import reset as axes_reset
from django.conf import settings
from django.db import transaction
from django.utils import timezone

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


@transaction.atomic
def reset_lockouts(
    *, actor: Any, ip_address: str | None = None, username: str | None = None, os_user: str = ""
) -> int:
    """Forget the failed logins matching an address and/or a user name (all without either),
    as django-axes' reset does, and audit what was removed; returns how many attempts."""
    removed = axes_reset(ip=ip_address, username=username)
    if removed:
        record_event(
            action="auth.lockouts_reset",
            actor=actor,
            object_type="user",
            object_id=(username or "")[:64],
            details={
                "username": username,
                "client_address": ip_address,
                "removed": removed,
                "os_user": os_user,
            },
        )
    return removed


# Login records django-axes keeps, by the name the audit trail gives them.
LOGIN_RECORDS = {"access log": AccessLog, "access failure log": AccessFailureLog}


@transaction.atomic
def prune_login_records(
    *, records: str, older_than_days: int, actor: Any, os_user: str = ""
) -> int:
    """Delete login records (successes or failures) older than `older_than_days`, audited."""
    if older_than_days < 1:
        raise ValueError(f"--age: at least 1 day; got {older_than_days}")
    limit = timezone.now() - datetime.timedelta(days=older_than_days)
    removed, _ = LOGIN_RECORDS[records].objects.filter(attempt_time__lte=limit).delete()
    if removed:
        record_event(
            action="auth.login_records_pruned",
            actor=actor,
            details={
                "records": records,
                "older_than_days": older_than_days,
                "removed": removed,
                "os_user": os_user,
            },
        )
    return removed
