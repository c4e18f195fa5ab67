"""Live events for dashboards: published to Channels groups only after the transaction commits."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

FLEET_GROUP = "fleet"

# The loop the ASGI server runs consumers on. Workers publish from their own threads; the
# in-process channel layer's queues belong to this loop, so sends are handed to it.
_server_loop: asyncio.AbstractEventLoop | None = None
_server_loop_lock = threading.Lock()


def bind_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Remember the server's event loop (consumers call this when they connect)."""
    global _server_loop
    with _server_loop_lock:
        _server_loop = loop


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
    message = {"type": "ota.event", "event": event}
    try:
        loop = _server_loop
        if loop is not None and loop.is_running() and not _runs_on(loop):
            future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
            future.result(timeout=5)
        else:
            async_to_sync(layer.group_send)(group, message)
    except Exception:
        # A dashboard that misses one event catches up on its next load; the workflow must not fail.
        logger.exception("live event to %s not delivered", group)


def _runs_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


# Called with (group, event) for every event once its transaction commits, before the live
# send; apps above core subscribe here (webhooks) instead of their publishers calling them.
_listeners: list[Callable[[str, dict[str, Any]], None]] = []


def add_listener(listener: Callable[[str, dict[str, Any]], None]) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def _deliver(group: str, event: dict[str, Any]) -> None:
    for listener in list(_listeners):
        try:
            listener(group, event)
        except Exception:
            logger.exception("event listener %s failed for %s", listener, group)
    _send(group, event)


def publish_event(group: str, event: dict[str, Any]) -> None:
    """Send `event` (JSON-serialisable, with a "kind" key) to a group once the current transaction commits.

    Consumers receive it as a message of type "ota.event" (handler method `ota_event`).
    """
    transaction.on_commit(lambda: _deliver(group, event))
