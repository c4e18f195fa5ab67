"""Background services of this process: supervised with restarts, and their health for probes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

RUNNING = "running"
RESTARTING = "restarting"
FAILED = "failed"
FINISHED = "finished"
STOPPED = "stopped"

# A service that ran this long before failing counts as recovered: its failures start over.
STABLE_AFTER_SECONDS = 60.0
BACKOFF_MIN_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0


@dataclass
class ServiceHealth:
    name: str
    state: str
    restarts: int = 0
    last_error: str = ""
    changed_at: float = field(default_factory=time.time)
    details: dict[str, Any] = field(default_factory=dict)


_lock = threading.Lock()
_services: dict[str, ServiceHealth] = {}


def background_services() -> dict[str, dict[str, Any]]:
    """Each supervised service's state ("running", "restarting", "failed", ...) and details."""
    with _lock:
        return {name: asdict(service) for name, service in _services.items()}


def healthy() -> bool:
    """False while any background service is failed, restarting or reports itself disconnected
    (connected=False) or without its database (database=False)."""
    with _lock:
        return all(
            service.state in (RUNNING, FINISHED, STOPPED)
            and service.details.get("connected", True)
            and service.details.get("database", True)
            for service in _services.values()
        )


def set_state(name: str, state: str, *, restarts: int = 0, error: str = "") -> None:
    with _lock:
        service = _services.setdefault(name, ServiceHealth(name=name, state=state))
        service.state, service.restarts, service.changed_at = state, restarts, time.time()
        if error:
            service.last_error = error


def set_details(name: str, **details: Any) -> None:
    """What a running service reports about itself, e.g. connected=False for a lost broker."""
    with _lock:
        service = _services.setdefault(name, ServiceHealth(name=name, state=RUNNING))
        service.details.update(details)


def forget(name: str) -> None:
    with _lock:
        _services.pop(name, None)


def supervise(
    name: str,
    start: Callable[[threading.Event], None],
    stop: threading.Event,
    *,
    max_restarts: int,
    on_give_up: Callable[[str], None],
    first_backoff: float = BACKOFF_MIN_SECONDS,
) -> None:
    """Run `start(stop)` until `stop` is set, restarting it with backoff when it raises.

    A service that returns by itself has nothing (more) to do, as the embedded broker when
    MQTT_URL names another one. After `max_restarts` failures in a row the service is marked
    failed and `on_give_up(name)` decides what the process does without it.
    """
    failures = 0
    while not stop.is_set():
        set_state(name, RUNNING, restarts=failures)
        started = time.monotonic()
        try:
            start(stop)
        except Exception as exc:
            if time.monotonic() - started > STABLE_AFTER_SECONDS:
                failures = 0
            failures += 1
            error = f"{type(exc).__name__}: {exc}"
            if failures > max_restarts:
                logger.critical(
                    "%s failed %d times in a row; giving up", name, failures, exc_info=True
                )
                set_state(name, FAILED, restarts=failures - 1, error=error)
                on_give_up(name)
                return
            delay = min(first_backoff * 2 ** (failures - 1), BACKOFF_MAX_SECONDS)
            logger.exception("%s failed; restart %d in %.0f s", name, failures, delay)
            set_state(name, RESTARTING, restarts=failures, error=error)
            stop.wait(delay)
            continue
        set_state(name, STOPPED if stop.is_set() else FINISHED, restarts=failures)
        return
