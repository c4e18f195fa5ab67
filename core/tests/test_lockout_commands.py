"""django-axes' reset commands, reachable through manage.py, change login state only audited."""

from __future__ import annotations

import datetime
from io import StringIO

import pytest
from axes.models import AccessAttempt, AccessLog
from django.core.management import call_command, get_commands
from django.utils import timezone

from core.models import AuditEvent

pytestmark = pytest.mark.django_db

AXES_COMMANDS = [
    "axes_reset",
    "axes_reset_ip",
    "axes_reset_username",
    "axes_reset_ip_username",
    "axes_reset_logs",
    "axes_reset_failure_logs",
]


def _attempt(username: str, ip: str, failures: int = 5) -> AccessAttempt:
    return AccessAttempt.objects.create(
        username=username,
        ip_address=ip,
        user_agent="test",
        failures_since_start=failures,
        get_data="",
        post_data="",
        http_accept="*/*",
        path_info="/accounts/login/",
    )


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("name", AXES_COMMANDS)
def test_manage_py_runs_the_audited_command(name) -> None:
    assert get_commands()[name] == "core"


def test_resetting_one_user_is_audited_and_leaves_the_others() -> None:
    _attempt("alice", "10.0.0.1")
    _attempt("bob", "10.0.0.2")

    assert _run("axes_reset_username", "alice") == "1 attempts removed.\n"

    assert list(AccessAttempt.objects.values_list("username", flat=True)) == ["bob"]
    event = AuditEvent.objects.get(action="auth.lockouts_reset")
    assert event.actor_label == "system:axes_reset_username"
    assert event.details["username"] == "alice"
    assert event.details["removed"] == 1
    assert event.details["os_user"]


def test_resetting_everything_and_by_address_is_audited() -> None:
    _attempt("alice", "10.0.0.1")
    _attempt("bob", "10.0.0.2")
    _attempt("carol", "10.0.0.3")

    assert _run("axes_reset_ip", "10.0.0.1") == "1 attempts removed.\n"
    assert _run("axes_reset_ip_username", "10.0.0.2", "bob") == "1 attempts removed.\n"
    assert _run("axes_reset") == "1 attempts removed.\n"

    assert not AccessAttempt.objects.exists()
    events = AuditEvent.objects.filter(action="auth.lockouts_reset").order_by("pk")
    assert [(e.details["client_address"], e.details["username"]) for e in events] == [
        ("10.0.0.1", None),
        ("10.0.0.2", "bob"),
        (None, None),
    ]


def test_a_reset_that_finds_nothing_changes_nothing() -> None:
    assert _run("axes_reset_username", "nobody") == "No attempts found.\n"
    assert not AuditEvent.objects.filter(action="auth.lockouts_reset").exists()


def test_pruning_login_records_is_audited() -> None:
    old = AccessLog.objects.create(
        username="alice", ip_address="10.0.0.1", user_agent="t", path_info="/", http_accept="*/*"
    )
    AccessLog.objects.filter(pk=old.pk).update(
        attempt_time=timezone.now() - datetime.timedelta(days=40)
    )
    AccessLog.objects.create(
        username="bob", ip_address="10.0.0.2", user_agent="t", path_info="/", http_accept="*/*"
    )

    assert _run("axes_reset_logs", "--age", "30") == "1 logs removed.\n"

    event = AuditEvent.objects.get(action="auth.login_records_pruned")
    assert event.details["records"] == "access log"
    assert (event.details["older_than_days"], event.details["removed"]) == (30, 1)
    assert AccessLog.objects.count() == 1


def test_an_age_below_one_day_is_refused() -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="^--age: at least 1 day; got 0$"):
        _run("axes_reset_failure_logs", "--age", "0")
