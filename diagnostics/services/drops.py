from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from diagnostics.models import InboundDrop


def count_drop(*, reason: str, topic: str) -> None:
    """Add one to the dropped-message counter of `reason` (shown on the dashboard)."""
    now = timezone.now()
    fields = {"count": F("count") + 1, "last_topic": topic[:256], "last_at": now}
    with transaction.atomic():
        if InboundDrop.objects.filter(reason=reason).update(**fields):
            return
        try:
            with transaction.atomic():
                InboundDrop.objects.create(
                    reason=reason, count=1, last_topic=topic[:256], last_at=now
                )
        except IntegrityError:
            # Another worker created the row between our update and insert.
            InboundDrop.objects.filter(reason=reason).update(**fields)


def drop_counts() -> dict[str, int]:
    """Dropped inbound messages per reason."""
    return dict(InboundDrop.objects.values_list("reason", "count"))
