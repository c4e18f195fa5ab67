from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core.db import is_database_unavailable
from diagnostics.models import InboundDrop

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    count: int
    last_topic: str
    last_at: datetime


# Drops counted while the database could not be reached, written when it answers again. They
# live in this process only: a bridge that stops during an outage logs what it still held.
_pending: dict[str, _Pending] = {}
_pending_lock = threading.Lock()


def count_drop(*, reason: str, topic: str) -> None:
    """Add one to the dropped-message counter of `reason` (shown on the dashboard).

    While the database is unreachable the count is kept in memory and written with the next
    drop, or the next flush_pending_drops(), that reaches the database.
    """
    now = timezone.now()
    flush_pending_drops()
    try:
        _add(reason, 1, topic[:256], now)
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        _keep(reason, 1, topic[:256], now)
        logger.warning(
            "drop counter %s kept in memory until the database answers (%s)", reason, exc
        )


def flush_pending_drops() -> int:
    """Write the drop counts kept during an outage; returns how many were written."""
    with _pending_lock:
        if not _pending:
            return 0
        held = dict(_pending)
        _pending.clear()
    written = 0
    try:
        for reason, pending in list(held.items()):
            _add(reason, pending.count, pending.last_topic, pending.last_at)
            written += pending.count
            del held[reason]
    except Exception as exc:
        for reason, pending in held.items():
            _keep(reason, pending.count, pending.last_topic, pending.last_at)
        if not is_database_unavailable(exc):
            raise
        return written
    finally:
        if written:
            logger.info("wrote %d drop counts kept while the database was unreachable", written)
    return written


def pending_drops() -> dict[str, int]:
    """Drop counts per reason that wait in memory for the database."""
    with _pending_lock:
        return {reason: pending.count for reason, pending in _pending.items()}


def forget_pending_drops() -> None:
    """Discard the drop counts held in memory (a test's clean slate), saying what is lost."""
    with _pending_lock:
        lost = {reason: pending.count for reason, pending in _pending.items()}
        _pending.clear()
    if lost:
        logger.warning("drop counts discarded before the database took them: %s", lost)


def _keep(reason: str, count: int, topic: str, at: datetime) -> None:
    with _pending_lock:
        held = _pending.get(reason)
        if held is None:
            _pending[reason] = _Pending(count, topic, at)
        else:
            held.count += count
            if at >= held.last_at:
                held.last_topic, held.last_at = topic, at


def _add(reason: str, count: int, topic: str, at: datetime) -> None:
    fields = {"count": F("count") + count, "last_topic": topic, "last_at": at}
    with transaction.atomic():
        if InboundDrop.objects.filter(reason=reason).update(**fields):
            return
        try:
            with transaction.atomic():
                InboundDrop.objects.create(reason=reason, count=count, last_topic=topic, last_at=at)
        except IntegrityError:
            # Another worker created the row between our update and insert.
            InboundDrop.objects.filter(reason=reason).update(**fields)


def drop_counts() -> dict[str, int]:
    """Dropped inbound messages per reason."""
    return dict(InboundDrop.objects.values_list("reason", "count"))
