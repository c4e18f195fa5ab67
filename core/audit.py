"""The audit trail: who did what to which vehicle or object, with before/after state."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import transaction

from core.models import AuditEvent


def actor_label_of(actor: Any) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    identity = getattr(actor, "identity", None)
    if identity is not None and getattr(identity, "vin", None):
        return f"vehicle:{identity.vin}"
    return f"user:{getattr(actor, 'username', actor)}"


def _entry_hash(previous_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((previous_hash + canonical).encode()).hexdigest()


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
        # Serialise writers on the chain head so two events never share a predecessor.
        last = AuditEvent.objects.select_for_update().order_by("-id").only("entry_hash").first()
        previous_hash = last.entry_hash if last else ""
        return AuditEvent.objects.create(
            actor=user,
            previous_hash=previous_hash,
            entry_hash=_entry_hash(previous_hash, fields),
            **fields,
        )


def verify_chain() -> int | None:
    """Return the id of the first event whose hash does not match, or None if the chain is intact."""
    previous_hash = ""
    for event in AuditEvent.objects.order_by("id").iterator():
        fields = {
            "actor_label": event.actor_label,
            "action": event.action,
            "vehicle_vin": event.vehicle_vin,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "before": event.before,
            "after": event.after,
            "details": event.details,
        }
        if event.previous_hash != previous_hash or event.entry_hash != _entry_hash(
            previous_hash, fields
        ):
            return event.pk
        previous_hash = event.entry_hash
    return None
