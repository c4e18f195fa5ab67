"""Live events for dashboards: published to Channels groups only after the transaction commits."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

FLEET_GROUP = "fleet"


def campaign_group(campaign_id: Any) -> str:
    return f"campaign.{campaign_id}"


def vehicle_group(vin: str) -> str:
    return f"vehicle.{vin}"


def diagnostics_group(request_id: Any) -> str:
    return f"diagnostics.{request_id}"


def _send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "ota.event", "event": event})
    except Exception:
        # A dashboard that misses one event catches up on its next load; the workflow must not fail.
        logger.exception("live event to %s not delivered", group)


def publish_event(group: str, event: dict[str, Any]) -> None:
    """Send `event` (JSON-serialisable, with a "kind" key) to a group once the current transaction commits.

    Consumers receive it as a message of type "ota.event" (handler method `ota_event`).
    """
    transaction.on_commit(lambda: _send(group, event))
