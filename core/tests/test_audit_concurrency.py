from __future__ import annotations

import threading

import pytest
from django.db import connections, transaction

from core.audit import check_chain, record_event
from core.models import AuditEvent

WRITERS = 8
EVENTS_PER_WRITER = 50


def _write_events(writer: int, start: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        start.wait(timeout=30)
        for number in range(EVENTS_PER_WRITER):
            # Each event in its own transaction, as a workflow would write it.
            with transaction.atomic():
                record_event(
                    action="test.concurrent",
                    actor=f"system:writer-{writer}",
                    object_type="writer",
                    object_id=writer,
                    details={"number": number},
                )
    except BaseException as exc:  # noqa: BLE001 - reported to the main thread
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_linear_chain() -> None:
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_write_events, args=(writer, start, errors))
        for writer in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    total = WRITERS * EVENTS_PER_WRITER
    assert AuditEvent.objects.count() == total
    predecessors = list(AuditEvent.objects.values_list("previous_hash", flat=True))
    forks = len(predecessors) - len(set(predecessors))
    assert forks == 0
    report = check_chain()
    assert report.broken_id is None, report.reason
    assert report.count == total
