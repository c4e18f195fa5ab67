from __future__ import annotations

import pytest
from django.db import connection, transaction

from core.audit import record_event, verify_chain
from core.models import AuditEvent


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
    if connection.vendor == "postgresql":
        with pytest.raises(Exception, match="append-only"), transaction.atomic():
            AuditEvent.objects.filter(pk=second.pk).update(after={"version": "9.9.9"})
        return
    AuditEvent.objects.filter(pk=second.pk).update(after={"version": "9.9.9"})
    assert verify_chain() == second.pk
