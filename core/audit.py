"""The audit trail: who did what to which vehicle or object, with before/after state."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.models import AuditChainHead, AuditEvent

ACTOR_KINDS = ("user", "vehicle", "system")
HEAD_ID = 1
HASH_VERSION = 2
# Rows fetched per round trip while verifying; the whole trail never sits in memory.
VERIFY_CHUNK = 2000
HASHED_FIELDS = (
    "actor_label",
    "action",
    "vehicle_vin",
    "object_type",
    "object_id",
    "before",
    "after",
    "details",
)


def actor_label_of(actor: Any) -> str:
    """The label an event keeps of who caused it: "user:<name>", "vehicle:<VIN>" or
    "system:<component>", from a User, a VehicleUser or such a label; None is plain "system"."""
    if actor is None:
        return "system"
    if isinstance(actor, str):
        kind, _, name = actor.partition(":")
        if kind not in ACTOR_KINDS or not name:
            raise ValueError(f"audit actor {actor!r} is not user:, vehicle: or system:<name>")
        return actor
    identity = getattr(actor, "identity", None)
    if identity is not None and getattr(identity, "vin", None):
        return f"vehicle:{identity.vin}"
    username = getattr(actor, "username", "")
    if not username:
        raise ValueError(f"audit actor {actor!r} has no name")
    return f"user:{username}"


def _entry_hash(
    previous_hash: str, fields: dict[str, Any], created_at: dt.datetime, version: int
) -> str:
    if version >= 2:
        fields = {**fields, "created_at": created_at.astimezone(dt.UTC).isoformat()}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((previous_hash + canonical).encode()).hexdigest()


def _locked_head() -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(pk=HEAD_ID).first()
    if head is not None:
        return head
    # The migration creates the head; a flushed test database has none. Of two writers racing
    # to create it, the second one's insert waits for the first and then fails: retry the lock.
    last = AuditEvent.objects.order_by("-id").first()
    try:
        with transaction.atomic():
            AuditChainHead.objects.create(
                pk=HEAD_ID,
                last_hash=last.entry_hash if last else "",
                last_event_id=last.pk if last else None,
                event_count=AuditEvent.objects.count(),
            )
    except IntegrityError:
        pass
    return AuditChainHead.objects.select_for_update().get(pk=HEAD_ID)


def record_event(
    *,
    action: str,
    actor: Any = None,
    vehicle_vin: str = "",
    object_type: str = "",
    object_id: Any = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event, chained to the previous one. Call it inside the workflow's transaction.

    `actor` is a User, a VehicleUser, a label string ("system:campaign-worker") or None.
    The chain head stays locked until the caller's transaction ends, so concurrent workflows
    append one after another and the chain never forks. Take row locks before auditing: a
    workflow that locks rows after this call can deadlock with one that audits after them.
    """
    user = actor if getattr(actor, "pk", None) is not None and hasattr(actor, "username") else None
    fields = {
        "actor_label": actor_label_of(actor),
        "action": action,
        "vehicle_vin": vehicle_vin,
        "object_type": object_type,
        "object_id": str(object_id),
        "before": before or {},
        "after": after or {},
        "details": details or {},
    }
    with transaction.atomic():
        head = _locked_head()
        created_at = timezone.now()
        event = AuditEvent.objects.create(
            actor=user,
            created_at=created_at,
            previous_hash=head.last_hash,
            entry_hash=_entry_hash(head.last_hash, fields, created_at, HASH_VERSION),
            hash_version=HASH_VERSION,
            **fields,
        )
        AuditChainHead.objects.filter(pk=HEAD_ID).update(
            last_hash=event.entry_hash, last_event_id=event.pk, event_count=head.event_count + 1
        )
        return event


@dataclass(frozen=True)
class ChainReport:
    """What verifying the trail found: the events checked and, on a break, where and why."""

    count: int
    last_hash: str
    broken_id: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_id is None and not self.reason


def check_chain() -> ChainReport:
    """Walk the trail in id order, recomputing each hash; stop at the first break."""
    previous_hash = ""
    count = 0
    newest_version = 1
    rows = AuditEvent.objects.order_by("id").values_list(
        "id", "previous_hash", "entry_hash", "created_at", "hash_version", *HASHED_FIELDS
    )
    for event_id, stored_previous, stored_hash, created_at, version, *values in rows.iterator(
        chunk_size=VERIFY_CHUNK
    ):
        if stored_previous != previous_hash:
            return ChainReport(
                count, previous_hash, event_id, "previous hash does not match the event before it"
            )
        if version < newest_version:
            # Older events stay as they were hashed; a newer writer never goes back.
            return ChainReport(count, previous_hash, event_id, "hash version goes back")
        newest_version = version
        fields = dict(zip(HASHED_FIELDS, values, strict=True))
        if stored_hash != _entry_hash(previous_hash, fields, created_at, version):
            return ChainReport(count, previous_hash, event_id, "content does not match its hash")
        previous_hash = stored_hash
        count += 1
    head = AuditChainHead.objects.filter(pk=HEAD_ID).first()
    if head is not None and (head.last_hash, head.event_count) != (previous_hash, count):
        # Events missing at the end leave a shorter chain that is intact in itself.
        return ChainReport(
            count,
            previous_hash,
            head.last_event_id,
            f"the trail ends before the recorded head ({head.event_count} events)",
        )
    return ChainReport(count, previous_hash)


def verify_chain() -> int | None:
    """Return the id of the first event whose hash does not match, or None if the chain is intact."""
    return check_chain().broken_id
