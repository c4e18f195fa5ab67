from __future__ import annotations

import datetime
import os
import sqlite3
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from core.audit import _entry_hash, check_chain, record_event, verify_chain
from core.models import AuditChainHead, AuditEvent


def _tamper(sql: str, params: list[object]) -> None:
    """Change the trail behind the application's back, as someone with database access could.

    On PostgreSQL that means switching the append-only trigger off first (as its owner could);
    the test's transaction rolls the switch back with everything else.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Deferred foreign-key checks of the rows just written must run before ALTER TABLE.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(
                "ALTER TABLE core_auditevent DISABLE TRIGGER core_auditevent_append_only"
            )
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE core_auditevent ENABLE TRIGGER core_auditevent_append_only")


def test_events_form_an_intact_chain(fleet_operator) -> None:
    first = record_event(
        action="campaign.start", actor=fleet_operator, object_type="campaign", object_id=1
    )
    second = record_event(action="update.succeeded", actor="vehicle:WVWZZZ1JZ3W386752")
    assert second.previous_hash == first.entry_hash
    assert first.actor_label == "user:olga"
    assert verify_chain() is None


def test_events_cannot_be_changed_or_deleted_through_the_orm(db) -> None:
    event = record_event(action="campaign.start")
    event.action = "campaign.cancel"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()


def test_tampering_breaks_the_chain(db) -> None:
    record_event(action="a")
    second = record_event(action="b", after={"version": "2.0.0"})
    record_event(action="c")
    _tamper(
        "UPDATE core_auditevent SET after = %s WHERE id = %s", ['{"version": "9.9.9"}', second.pk]
    )
    assert verify_chain() == second.pk


def test_postgresql_refuses_changes_to_the_trail(db) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL's")
    event = record_event(action="a", actor="system:test")
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(after={"version": "9.9.9"})
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()


def test_the_chain_head_follows_every_event(db) -> None:
    record_event(action="a", actor="system:test")
    last = record_event(action="b", actor="system:test")
    head = AuditChainHead.objects.get()
    assert (head.last_hash, head.last_event_id) == (last.entry_hash, last.pk)
    report = check_chain()
    assert report.intact
    assert (report.count, report.last_hash) == (AuditEvent.objects.count(), last.entry_hash)


def test_a_deleted_last_event_is_reported(db) -> None:
    record_event(action="a", actor="system:test")
    last = record_event(action="b", actor="system:test")
    _tamper("DELETE FROM core_auditevent WHERE id = %s", [last.pk])
    report = check_chain()
    assert report.broken_id == last.pk
    assert "ends before the recorded head" in report.reason


def test_a_deleted_middle_event_is_reported_at_its_successor(db) -> None:
    record_event(action="a", actor="system:test")
    middle = record_event(action="b", actor="system:test")
    successor = record_event(action="c", actor="system:test")
    _tamper("DELETE FROM core_auditevent WHERE id = %s", [middle.pk])
    report = check_chain()
    assert report.broken_id == successor.pk
    assert "previous hash" in report.reason


def test_verify_audit_command_reports_an_intact_chain(db) -> None:
    record_event(action="a", actor="system:test")
    last = record_event(action="b", actor="system:test")
    out = StringIO()
    call_command("verify_audit", stdout=out)
    count = AuditEvent.objects.count()
    assert out.getvalue() == f"audit chain intact: {count} events, last hash {last.entry_hash}\n"


def test_verify_audit_command_fails_on_a_broken_chain(db) -> None:
    record_event(action="a", actor="system:test")
    edited = record_event(action="b", actor="system:test", after={"version": "2.0.0"})
    _tamper(
        "UPDATE core_auditevent SET after = %s WHERE id = %s", ['{"version": "9.9.9"}', edited.pk]
    )
    with pytest.raises(CommandError, match=f"audit chain broken at event {edited.pk}: content"):
        call_command("verify_audit")


@pytest.mark.slow
def test_verify_audit_exit_status_from_manage_py(tmp_path) -> None:
    """The exit status and one line an operator's script sees, from real `manage.py` processes."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'audit.sqlite3'}"}
    env["OTA_VAR_DIR"] = str(tmp_path)

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed arguments
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert manage("migrate", "--verbosity", "0").returncode == 0
    write = "from core.audit import record_event as r; [r(action=a, actor='system:test') for a in 'abc']"
    assert manage("shell", "-c", write).returncode == 0
    intact = manage("verify_audit")
    assert intact.returncode == 0
    assert intact.stdout.startswith("audit chain intact: 3 events, last hash ")
    with sqlite3.connect(tmp_path / "audit.sqlite3") as database:
        database.execute("UPDATE core_auditevent SET action = 'x' WHERE action = 'b'")
        (edited_id,) = database.execute(
            "SELECT id FROM core_auditevent WHERE action = 'x'"
        ).fetchone()
    broken = manage("verify_audit")
    assert broken.returncode != 0
    assert f"audit chain broken at event {edited_id}: content" in broken.stderr


@pytest.mark.parametrize("label", ["system", "operator:olga", "vehicle:", "WVWZZZ1JZ3W386752"])
def test_actor_labels_must_name_their_kind(db, label: str) -> None:
    with pytest.raises(ValueError, match="audit actor"):
        record_event(action="a", actor=label)
    assert not AuditEvent.objects.exists()


def test_a_changed_timestamp_breaks_the_chain(db) -> None:
    record_event(action="a", actor="system:test")
    backdated = record_event(action="b", actor="system:test")
    record_event(action="c", actor="system:test")
    _tamper(
        "UPDATE core_auditevent SET created_at = %s WHERE id = %s",
        [backdated.created_at - datetime.timedelta(days=3), backdated.pk],
    )
    report = check_chain()
    assert (report.broken_id, report.reason) == (backdated.pk, "content does not match its hash")


def test_events_hashed_before_the_time_was_covered_still_verify(db) -> None:
    """A trail written before upgrading (hash version 1) continues with version 2 events."""
    fields = {
        "actor_label": "system:test",
        "action": "before-upgrade",
        "vehicle_vin": "",
        "object_type": "",
        "object_id": "",
        "before": {},
        "after": {},
        "details": {},
    }
    created_at = timezone.now()
    old = AuditEvent.objects.create(
        created_at=created_at,
        previous_hash="",
        entry_hash=_entry_hash("", fields, created_at, 1),
        hash_version=1,
        **fields,
    )
    AuditChainHead.objects.update_or_create(
        pk=1, defaults={"last_hash": old.entry_hash, "last_event_id": old.pk, "event_count": 1}
    )
    new = record_event(action="after-upgrade", actor="system:test")
    assert (new.previous_hash, new.hash_version) == (old.entry_hash, 2)
    assert check_chain().intact
    _tamper("UPDATE core_auditevent SET hash_version = 1 WHERE id = %s", [new.pk])
    assert check_chain().broken_id == new.pk
