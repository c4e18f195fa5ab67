"""The webhook sender: `start(stop_event)` for `manage.py runota`; any number may run at once."""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections

from webhooks.services import deliver_due

logger = logging.getLogger(__name__)

IDLE_SECONDS = 1.0


def run_once() -> int:
    close_old_connections()
    try:
        return deliver_due()
    except Exception:
        logger.exception("webhook delivery pass failed")
        return 0
    finally:
        close_old_connections()


def start(stop_event: threading.Event) -> None:
    logger.info("webhook sender started")
    while not stop_event.is_set():
        if run_once() == 0:
            stop_event.wait(IDLE_SECONDS)
    logger.info("webhook sender stopped")
