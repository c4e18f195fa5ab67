"""The campaign worker: `start(stop_event)` for `manage.py runota`, one loop of engine ticks."""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections

from ota.engine import run_tick

logger = logging.getLogger(__name__)


def tick_seconds() -> float:
    return float(getattr(settings, "OTA_CAMPAIGN_TICK_SECONDS", 5))


def run_once() -> bool:
    """One tick; a failing tick is logged and the loop carries on (no crash loop)."""
    close_old_connections()
    try:
        summary = run_tick()
    except Exception:
        logger.exception("campaign tick failed")
        return False
    finally:
        close_old_connections()
    if summary.changed():
        logger.info("campaign tick: %s", summary)
    return True


def start(stop_event: threading.Event) -> None:
    """Run ticks until `stop_event` is set; waking early when it is."""
    logger.info("campaign worker started (tick %.1f s)", tick_seconds())
    while not stop_event.is_set():
        run_once()
        stop_event.wait(tick_seconds())
    logger.info("campaign worker stopped")
