"""Telemetry upkeep for `manage.py runota`: the history's day tables stay attached ahead of time."""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError, close_old_connections

from diagnostics.services import ensure_telemetry_partitions

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 3600.0


def run_once() -> int:
    close_old_connections()
    try:
        created = ensure_telemetry_partitions()
    except DatabaseError:
        # The database may be away for a while; the next round tries again.
        logger.exception("telemetry partitions: upkeep failed")
        return 0
    finally:
        close_old_connections()
    if created:
        logger.info("telemetry partitions: %d day tables created", created)
    return created


def start(stop_event: threading.Event) -> None:
    """Keep the day tables ready until `stop_event` is set."""
    while not stop_event.is_set():
        run_once()
        stop_event.wait(INTERVAL_SECONDS)
