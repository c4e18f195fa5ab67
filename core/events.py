"""Live events for dashboards: published to Channels groups only after the transaction commits."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

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


# Sends from threads while no server loop is bound go through one loop of the process's own.
# A new loop per event (async_to_sync) made the Redis layer, which keeps a connection pool per
# loop, open and close a Redis connection for every event: a sixth of a fleet server's CPU.
_sending_loop: asyncio.AbstractEventLoop | None = None
# Tasks started on the server loop from its own thread, kept until done.
_pending: set[asyncio.Future] = set()


def _loop_for_sending() -> asyncio.AbstractEventLoop:
    global _sending_loop
    with _server_loop_lock:
        if _sending_loop is None or _sending_loop.is_closed():
            _sending_loop = asyncio.new_event_loop()
            threading.Thread(
                target=_sending_loop.run_forever, name="live-events", daemon=True
            ).start()
        return _sending_loop


def _send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "ota.event", "event": event}
    try:
        loop = _server_loop
        if loop is not None and loop.is_running() and _runs_on(loop):
            task = loop.create_task(layer.group_send(group, message))  # never block the loop
            _pending.add(task)
            task.add_done_callback(lambda done: _sent(done, group))
            return
        if loop is None or not loop.is_running():
            loop = _loop_for_sending()
        asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(timeout=5)
    except Exception:
        # A dashboard that misses one event catches up on its next load; the workflow must not fail.
        logger.exception("live event to %s not delivered", group)


def _sent(task: asyncio.Future, group: str) -> None:
    _pending.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("live event to %s not delivered: %s", group, task.exception())


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
