"""Inbound MQTT: decode, check and dispatch one vehicle message to the services.

`handle_message` is what the Channels worker calls for every message; tests call it with no
broker. A message that is malformed, oversized, off-schema, from an unknown vehicle or
rejected by a service is logged with its topic, counted and dropped: it never raises and
never changes stored data.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, connections

from core.api import DomainError
from core.jsonlimits import MAX_JSON_DEPTH, JSONDepthError, loads
from core.mqtt import schemas, topics

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024

ACCEPTED = "accepted"


class Dropped(Exception):
    """A message we will not process; `reason` is the counter it adds to."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Inbound:
    topic: str
    vin: str
    kind: str
    document: dict[str, Any]


def max_payload_bytes() -> int:
    return getattr(settings, "MQTT_MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES)


def decode(
    topic: str, payload: bytes, *, root: str | None = None, limit: int | None = None
) -> Inbound:
    """Parse and check a message without touching the database; raises Dropped.

    `root` and `limit` default to the settings; a batch reads them once for all its messages.
    """
    parsed = topics.parse_inbound(topic, root=root)
    if parsed is None:
        raise Dropped("bad_topic", topic[:120])
    if len(payload) > (max_payload_bytes() if limit is None else limit):
        raise Dropped("oversized", f"{len(payload)} bytes")
    try:
        document = loads(payload, limit=MAX_JSON_DEPTH)
    except JSONDepthError as exc:
        raise Dropped("too_deep", str(exc))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Dropped("bad_json", str(exc)[:200])
    errors = schemas.schema_errors(parsed.kind, document)
    if errors:
        raise Dropped("bad_schema", "; ".join(errors))
    if document["vin"] != parsed.vin:
        # The front's ACL keeps a vehicle inside its own topics; a payload naming another VIN
        # is either a bug or an attempt to act as someone else.
        raise Dropped("vin_mismatch", f"payload vin {document['vin']}")
    return Inbound(topic=topic, vin=parsed.vin, kind=parsed.kind, document=document)


def _vehicle(vin: str) -> Any:
    from vehicles.models import Vehicle

    vehicle = Vehicle.objects.filter(vin=vin).first()
    if vehicle is None:
        raise Dropped("unknown_vehicle", vin)
    return vehicle


def _telemetry(vehicle: Any, doc: dict[str, Any]) -> None:
    from diagnostics.services import record_telemetry

    record_telemetry(vehicle=vehicle, report=doc)


def _status(vehicle: Any, doc: dict[str, Any]) -> None:
    from diagnostics.services import record_presence

    record_presence(vehicle=vehicle, state=doc["state"], reason=doc.get("reason", ""))


# Fields of an MQTT OTA status report that ota.services.record_status_report understands.
_OTA_REPORT_FIELDS = (
    "report_id",
    "update_id",
    "sequence",
    "vmg_state",
    "state",
    "percentage",
    "current_step",
    "error",
    "running_versions",
    "rolled_back",
    "package_proofs",
)


def _ota_status(vehicle: Any, doc: dict[str, Any]) -> None:
    from ota.services import record_status_report

    report = {k: doc[k] for k in _OTA_REPORT_FIELDS if k in doc}
    record_status_report(vehicle=vehicle, report=report, source="mqtt")


def _control_response(vehicle: Any, doc: dict[str, Any]) -> None:
    from diagnostics.services import record_control_response

    record_control_response(vehicle=vehicle, response=doc)


def _diagnostics_response(vehicle: Any, doc: dict[str, Any]) -> None:
    from diagnostics.services import record_diagnostic_response

    record_diagnostic_response(vehicle=vehicle, response=doc)


HANDLERS: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    topics.TELEMETRY: _telemetry,
    topics.STATUS: _status,
    topics.OTA_STATUS: _ota_status,
    topics.CONTROL_RESPONSE: _control_response,
    topics.DIAGNOSTICS_RESPONSE: _diagnostics_response,
}


def _refresh_connection() -> None:
    """Drop a database connection that broke since the last message.

    Unlike close_old_connections(), a healthy connection stays open: with CONN_MAX_AGE=0 that
    function reconnects on every call, which would cost a connection per batch. Inside a
    test's atomic block the connection is the test's own and must stay.
    """
    if connection.in_atomic_block:
        return
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.is_usable():
            conn.close()


def _drop(topic: str, reason: str, detail: str) -> str:
    from diagnostics.services import count_drop

    logger.warning("mqtt dropped topic=%s reason=%s detail=%s", topic, reason, detail)
    try:
        count_drop(reason=reason, topic=topic)
    except Exception:
        logger.exception("mqtt drop counter not updated topic=%s", topic)
    return f"dropped:{reason}"


# A message that meets a passing database failure (a lock, a failover) is retried before it
# is given up: the broker has its PUBACK already, so dropping it would lose it.
TRANSIENT_ATTEMPTS = 5
TRANSIENT_BACKOFF_S = 0.05


def _with_retries(call: Callable[[], None]) -> None:
    for attempt in range(TRANSIENT_ATTEMPTS):
        try:
            call()
            return
        except (OperationalError, InterfaceError):
            if attempt == TRANSIENT_ATTEMPTS - 1 or connection.in_atomic_block:
                raise
            time.sleep(TRANSIENT_BACKOFF_S * 2**attempt)
            _refresh_connection()


def handle_message(topic: str, payload: bytes) -> str:
    """Process one inbound message; returns "accepted" or "dropped:<reason>"."""
    _refresh_connection()
    try:
        inbound = decode(topic, payload)
    except Dropped as exc:
        return _drop(topic, exc.reason, exc.detail)
    except Exception as exc:
        logger.exception("mqtt decode failed topic=%s", topic[:120])
        return _drop(topic, "error", type(exc).__name__)
    return _dispatch(inbound)


def _is_store_failure(exc: Exception) -> bool:
    # The PostgreSQL telemetry path writes through the driver's own cursor, whose errors
    # Django does not wrap.
    return isinstance(exc, DatabaseError | connection.Database.Error)


def _dispatch(inbound: Inbound) -> str:
    """Hand one decoded message to its service, with retries and drop accounting."""
    topic = inbound.topic
    try:
        _with_retries(lambda: HANDLERS[inbound.kind](_vehicle(inbound.vin), inbound.document))
    except Dropped as exc:
        return _drop(topic, exc.reason, exc.detail)
    except DomainError as exc:
        field = f" field={exc.field}" if exc.field else ""
        return _drop(topic, "rejected", f"{exc.message}{field}")
    except Exception as exc:
        if _is_store_failure(exc):
            logger.exception("mqtt store failed topic=%s", topic)
            return _drop(topic, "store_failed", type(exc).__name__)
        logger.exception("mqtt handler failed topic=%s", topic)
        return _drop(topic, "error", type(exc).__name__)
    logger.debug("mqtt accepted topic=%s vin=%s kind=%s", topic, inbound.vin, inbound.kind)
    return ACCEPTED


def handle_batch(messages: Iterable[tuple[str, bytes]]) -> Counter[str]:
    """Process many messages; telemetry goes to the database in one bulk write.

    Everything else is handled one by one through handle_message, in arrival order.
    """
    _refresh_connection()
    outcomes: Counter[str] = Counter()
    telemetry: list[Inbound] = []
    suffix = "/" + topics.TELEMETRY
    root, limit = topics.topic_root(), max_payload_bytes()
    for topic, payload in messages:
        if not topic.endswith(suffix):
            outcomes[handle_message(topic, payload)] += 1
            continue
        try:
            telemetry.append(decode(topic, payload, root=root, limit=limit))
        except Dropped as exc:
            outcomes[_drop(topic, exc.reason, exc.detail)] += 1
        except Exception as exc:
            # Whatever one message does to the decoder, the rest of the batch is stored.
            logger.exception("mqtt decode failed topic=%s", topic[:120])
            outcomes[_drop(topic, "error", type(exc).__name__)] += 1
    if not telemetry:
        return outcomes
    try:
        outcomes.update(_store_telemetry(telemetry))
    except Exception:
        # One bad row or a passing database failure must not sink the batch: retry each
        # message alone, with the retries and drop accounting of a single message.
        logger.exception("telemetry batch of %d failed; retrying one by one", len(telemetry))
        _refresh_connection()
        for message in telemetry:
            outcomes[_dispatch(message)] += 1
    return outcomes


def _store_telemetry(telemetry: list[Inbound]) -> Counter[str]:
    from diagnostics.services import record_telemetry_batch
    from diagnostics.services.telemetry import VehicleKey
    from vehicles.models import Vehicle

    outcomes: Counter[str] = Counter()
    # One query per batch for every VIN in it, and plain (vin, id) pairs, not model rows.
    vehicles = {
        vin: VehicleKey(pk, vin)
        for vin, pk in Vehicle.objects.filter(vin__in={m.vin for m in telemetry}).values_list(
            "vin", "pk"
        )
    }
    known = [m for m in telemetry if m.vin in vehicles]
    record_telemetry_batch(reports=[(vehicles[m.vin], m.document) for m in known])
    outcomes[ACCEPTED] += len(known)
    for message in telemetry:
        if message.vin not in vehicles:
            outcomes[_drop(message.topic, "unknown_vehicle", message.vin)] += 1
    return outcomes
