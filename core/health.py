"""Background services of this process: supervised with restarts, and their health for probes.

Also the readiness checks of what the process depends on (database, channel layer, broker,
storage, certificates), each answering a small JSON-able dict with "ok".
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from cryptography import x509
from django.conf import settings
from django.db import DatabaseError, connection

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


# ---------------------------------------------------------------------------------------------
# Readiness checks

# A probe must answer well within an orchestrator's timeout (Kubernetes: 1 s by default, ours 5).
CHECK_TIMEOUT_SECONDS = 2.0


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "vendor": connection.vendor}


def check_channel_layer() -> dict[str, Any]:
    """A message sent to a fresh channel comes back: the layer (Redis when REDIS_URL) works.

    The check runs on a layer instance of its own: the process's shared one may be receiving
    on the bridge's event loop, and channels-redis refuses a receive from a second loop.
    """
    if DEFAULT_CHANNEL_LAYER not in getattr(settings, "CHANNEL_LAYERS", {}):
        return {"ok": False, "error": "no channel layer configured"}
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    backend = type(layer).__name__

    async def round_trip() -> bool:
        try:
            channel = await layer.new_channel("ready.")
            marker = uuid.uuid4().hex
            await layer.send(channel, {"type": "ready.check", "marker": marker})
            received = await layer.receive(channel)
            return received.get("marker") == marker
        finally:
            if hasattr(layer, "close_pools"):
                await layer.close_pools()

    async def bounded() -> bool:
        return await asyncio.wait_for(round_trip(), CHECK_TIMEOUT_SECONDS)

    try:
        ok = async_to_sync(bounded)()
    except Exception as exc:
        return {"ok": False, "backend": backend, "error": type(exc).__name__}
    return {"ok": ok, "backend": backend}


def check_broker() -> dict[str, Any]:
    """The MQTT broker accepts a TCP connection (the bridge service reports its session)."""
    from core.mqtt.connection import broker_address

    address = broker_address("bridge")
    where = {"host": address.host, "port": address.port, "embedded": address.embedded}
    try:
        with socket.create_connection((address.host, address.port), timeout=CHECK_TIMEOUT_SECONDS):
            pass
    except OSError as exc:
        return {"ok": False, **where, "error": type(exc).__name__}
    return {"ok": True, **where}


def check_storage() -> dict[str, Any]:
    """Package and media directories are writable and keep OTA_READY_MIN_FREE_BYTES free."""
    minimum = settings.OTA_READY_MIN_FREE_BYTES
    result: dict[str, Any] = {"ok": True, "min_free_bytes": minimum, "directories": {}}
    for name in ("PACKAGE_DIR", "MEDIA_ROOT"):
        directory = Path(getattr(settings, name))
        entry: dict[str, Any] = {"ok": True}
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=directory) as probe:
                probe.write(b"ready")
            entry["free_bytes"] = shutil.disk_usage(directory).free
        except OSError as exc:
            entry = {"ok": False, "error": f"not writable ({type(exc).__name__})"}
        else:
            if entry["free_bytes"] < minimum:
                entry.update(ok=False, error="too little free space")
        result["directories"][name] = entry
        result["ok"] = result["ok"] and entry["ok"]
    return result


def _certificate_files() -> list[tuple[str, Path]]:
    root = Path(settings.PKI_DIR)
    found = [(f"ca/{p.parent.name}", p) for p in sorted(root.glob("ca/*/ca.crt"))]
    found += [(f"server/{p.parent.name}", p) for p in sorted(root.glob("server/*/server.crt"))]
    return found


def check_certificates() -> dict[str, Any]:
    """Days left on every CA and server certificate under PKI_DIR.

    Only an expired (or not yet valid) certificate, or none at all, makes the process unready:
    failing every replica a fortnight before expiry would take the whole service down. The
    warning threshold (OTA_CERT_WARN_DAYS) shows as "expiring" for alerts to act on.
    """
    now = datetime.datetime.now(datetime.UTC)
    warn_days = settings.OTA_CERT_WARN_DAYS
    result: dict[str, Any] = {"ok": True, "certificates": {}}
    files = _certificate_files()
    if not files:
        return {"ok": False, "error": "no certificates: run `manage.py pqc_pki init`"}
    for name, path in files:
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            result["certificates"][name] = {"ok": False, "error": type(exc).__name__}
            result["ok"] = False
            continue
        days_left = (cert.not_valid_after_utc - now).total_seconds() / 86400
        valid = cert.not_valid_before_utc <= now < cert.not_valid_after_utc
        result["certificates"][name] = {
            "ok": valid,
            "days_left": round(days_left, 1),
            "expiring": valid and days_left < warn_days,
        }
        result["ok"] = result["ok"] and valid
    return result


READINESS_CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": check_database,
    "channel_layer": check_channel_layer,
    "broker": check_broker,
    "storage": check_storage,
    "certificates": check_certificates,
}


def readiness() -> tuple[bool, dict[str, Any]]:
    """Run the checks named in OTA_READINESS_CHECKS; ready when all pass and services are up."""
    checks = {}
    for name in settings.OTA_READINESS_CHECKS:
        try:
            checks[name] = READINESS_CHECKS[name]()
        except Exception as exc:
            logger.exception("readiness check %s failed", name)
            checks[name] = {"ok": False, "error": type(exc).__name__}
    ready = healthy() and all(check["ok"] for check in checks.values())
    return ready, checks
