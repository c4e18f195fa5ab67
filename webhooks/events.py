"""Which live events become webhook deliveries (subscribed through core.events)."""

from __future__ import annotations

from typing import Any

from webhooks.choices import EventType

# Event kind -> (webhook event type, the group prefix it is taken from). A workflow publishes
# one event to several groups (a vehicle's and its campaign's); one of them counts.
SUBSCRIBED_KINDS: dict[str, tuple[str, str]] = {
    "campaign_progress": (EventType.CAMPAIGN_PROGRESS, "campaign."),
    "update_state": (EventType.VEHICLE_UPDATE, "vehicle."),
    "diagnostics_status": (EventType.DIAGNOSTICS_STATUS, "diagnostics."),
    "diagnostics_result": (EventType.DIAGNOSTICS_RESULT, "diagnostics."),
}


def on_event(group: str, event: dict[str, Any]) -> None:
    subscribed = SUBSCRIBED_KINDS.get(event.get("kind", ""))
    if subscribed is None:
        return
    event_type, prefix = subscribed
    if not group.startswith(prefix):
        return
    from webhooks.services import enqueue_event

    enqueue_event(event_type, {k: v for k, v in event.items() if k != "kind"})
