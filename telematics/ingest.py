"""Inbound MQTT: decode, check and dispatch one vehicle message to the services.

`handle_batch` is what the bridge's workers and the Channels worker call; tests call it with no
broker. A message that is malformed, oversized, off-schema, from an unknown vehicle or
rejected by a service (or by the database, as a value out of range) is logged with its topic,
counted and dropped, and changes no stored data. When the database itself cannot be reached,
nothing is dropped: DatabaseUnavailable names the messages neither stored nor counted, and
the caller keeps them unacknowledged and tries them again once the database answers.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, connections

from core.api import DomainError
from core.db import is_database_unavailable
from core.jsonlimits import MAX_JSON_DEPTH, JSONDepthError, loads
from core.logs import log_context
from core.mqtt import schemas, topics
from diagnostics.services import (
    record_control_response,
    record_diagnostic_response,
    record_presence,
    record_telemetry,
    record_telemetry_batch,
)
from diagnostics.services.drops import count_drop, flush_pending_drops
from diagnostics.services.telemetry import VehicleKey
from ota.services import record_status_report
from vehicles.models import Vehicle

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024

ACCEPTED = "accepted"


class Dropped(Exception):
    """A message we will not process; `reason` is the counter it adds to."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DatabaseUnavailable(Exception):
    """The database cannot be reached: the messages at `pending` were neither stored nor counted.

    `pending` indexes the messages given to handle_batch; `outcomes` counts the others, which
    were stored or dropped before the database went away.
    """

    def __init__(self, pending: list[int], outcomes: Counter[str], cause: BaseException) -> None:
        super().__init__(f"database unavailable, {len(pending)} messages pending: {cause}")
        self.pending = pending
        self.outcomes = outcomes


class _Unreachable(Exception):
    """One message met an unreachable database (handle_batch turns it into DatabaseUnavailable)."""


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
    vehicle = Vehicle.objects.filter(vin=vin).first()
    if vehicle is None:
        raise Dropped("unknown_vehicle", vin)
    return vehicle


def _telemetry(vehicle: Any, doc: dict[str, Any]) -> None:
    record_telemetry(vehicle=vehicle, report=doc)


def _status(vehicle: Any, doc: dict[str, Any]) -> None:
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
    report = {k: doc[k] for k in _OTA_REPORT_FIELDS if k in doc}
    record_status_report(vehicle=vehicle, report=report, source="mqtt")


def _control_response(vehicle: Any, doc: dict[str, Any]) -> None:
    record_control_response(vehicle=vehicle, response=doc)


def _diagnostics_response(vehicle: Any, doc: dict[str, Any]) -> None:
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
    logger.warning("mqtt dropped topic=%s reason=%s detail=%s", topic, reason, detail)
    try:
        count_drop(reason=reason, topic=topic)
    except Exception:
        logger.exception("mqtt drop counter not updated topic=%s", topic)
    return f"dropped:{reason}"


# A message that meets a passing database failure (a lock, a deadlock) is retried here before
# it is given up. An unreachable database is not: the caller retries the whole message later.
TRANSIENT_ATTEMPTS = 5
TRANSIENT_BACKOFF_S = 0.05
OUTAGE_BACKOFF_S = 0.5
OUTAGE_BACKOFF_MAX_S = 30.0


def _with_retries(call: Callable[[], None]) -> None:
    for attempt in range(TRANSIENT_ATTEMPTS):
        try:
            call()
            return
        except (OperationalError, InterfaceError) as exc:
            if (
                attempt == TRANSIENT_ATTEMPTS - 1
                or connection.in_atomic_block
                or is_database_unavailable(exc)
            ):
                raise
            time.sleep(TRANSIENT_BACKOFF_S * 2**attempt)
            _refresh_connection()


def _close_connections() -> None:
    """After an outage a connection may look open and lead nowhere: the next try opens anew."""
    if connection.in_atomic_block:
        return
    for conn in connections.all(initialized_only=True):
        conn.close()


def handle_message(topic: str, payload: bytes) -> str:
    """Process one message; returns "accepted" or "dropped:<reason>".

    Raises DatabaseUnavailable (pending [0]) when the database cannot be reached.
    """
    try:
        return _handle_one(topic, payload)
    except _Unreachable as exc:
        raise _unavailable([0], Counter(), exc.__cause__ or exc) from exc


def _handle_one(topic: str, payload: bytes) -> str:
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
    """Hand one decoded message to its service, with retries and drop accounting.

    Raises _Unreachable, with the database error as its cause, when the database is down.
    """
    # Every log line of this message, the services' included, names the vehicle.
    with log_context(vehicle_vin=inbound.vin, update_id=inbound.document.get("update_id")):
        return _dispatch_in_context(inbound)


def _dispatch_in_context(inbound: Inbound) -> str:
    topic = inbound.topic
    try:
        _with_retries(lambda: HANDLERS[inbound.kind](_vehicle(inbound.vin), inbound.document))
    except Dropped as exc:
        return _drop(topic, exc.reason, exc.detail)
    except DomainError as exc:
        field = f" field={exc.field}" if exc.field else ""
        return _drop(topic, "rejected", f"{exc.message}{field}")
    except Exception as exc:
        if is_database_unavailable(exc):
            raise _Unreachable(topic) from exc
        if _is_store_failure(exc):
            logger.exception("mqtt store failed topic=%s", topic)
            return _drop(topic, "store_failed", type(exc).__name__)
        logger.exception("mqtt handler failed topic=%s", topic)
        return _drop(topic, "error", type(exc).__name__)
    logger.debug("mqtt accepted topic=%s vin=%s kind=%s", topic, inbound.vin, inbound.kind)
    return ACCEPTED


def handle_batch(messages: Sequence[tuple[str, bytes]]) -> Counter[str]:
    """Process many messages; telemetry goes to the database in one bulk write.

    Everything else is handled one by one, in arrival order. Raises DatabaseUnavailable when
    the database cannot be reached, naming the messages still to be tried again.
    """
    _refresh_connection()
    flush_pending_drops()
    outcomes: Counter[str] = Counter()
    telemetry: list[tuple[int, Inbound]] = []
    suffix = "/" + topics.TELEMETRY
    root, limit = topics.topic_root(), max_payload_bytes()
    for index, (topic, payload) in enumerate(messages):
        if not topic.endswith(suffix):
            try:
                outcomes[_handle_one(topic, payload)] += 1
            except _Unreachable as exc:
                pending = [i for i, _ in telemetry] + list(range(index, len(messages)))
                raise _unavailable(pending, outcomes, exc.__cause__ or exc) from exc
            continue
        try:
            telemetry.append((index, decode(topic, payload, root=root, limit=limit)))
        except Dropped as exc:
            outcomes[_drop(topic, exc.reason, exc.detail)] += 1
        except Exception as exc:
            # Whatever one message does to the decoder, the rest of the batch is stored.
            logger.exception("mqtt decode failed topic=%s", topic[:120])
            outcomes[_drop(topic, "error", type(exc).__name__)] += 1
    if not telemetry:
        return outcomes
    try:
        outcomes.update(_store_telemetry([message for _, message in telemetry]))
    except Exception as exc:
        if is_database_unavailable(exc):
            raise _unavailable([i for i, _ in telemetry], outcomes, exc) from exc
        # One bad row must not sink the batch: retry each message alone, with the retries and
        # drop accounting of a single message.
        logger.exception("telemetry batch of %d failed; retrying one by one", len(telemetry))
        _refresh_connection()
        for position, (_, message) in enumerate(telemetry):
            try:
                outcomes[_dispatch(message)] += 1
            except _Unreachable as unreachable:
                pending = [i for i, _ in telemetry[position:]]
                cause = unreachable.__cause__ or unreachable
                raise _unavailable(pending, outcomes, cause) from unreachable
    return outcomes


# How long the Channels worker holds a batch through a database outage before it counts the
# batch as dropped: the bridge acknowledged those messages when the channel took them.
OUTAGE_PATIENCE_S = 600.0


def handle_batch_through_outage(
    messages: Sequence[tuple[str, bytes]], *, patience: float = OUTAGE_PATIENCE_S
) -> Counter[str]:
    """handle_batch for a caller that cannot leave messages unacknowledged.

    Through a database outage the pending messages are tried again with backoff, for at most
    `patience` seconds; then each is counted as dropped ("database_unavailable"), the count
    kept in memory until the database answers.
    """
    outcomes: Counter[str] = Counter()
    pending = list(messages)
    deadline = time.monotonic() + patience
    for attempt in itertools.count(1):
        try:
            outcomes.update(handle_batch(pending))
            return outcomes
        except DatabaseUnavailable as exc:
            outcomes.update(exc.outcomes)
            pending = [pending[i] for i in exc.pending]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for topic, _ in pending:
                    outcomes[_drop(topic, "database_unavailable", str(exc)[:200])] += 1
                return outcomes
            delay = min(OUTAGE_BACKOFF_S * 2 ** (attempt - 1), OUTAGE_BACKOFF_MAX_S, remaining)
            logger.warning(
                "database unavailable: %d mqtt messages held; retry %d in %.1f s",
                len(pending),
                attempt,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def _unavailable(
    pending: list[int], outcomes: Counter[str], cause: BaseException
) -> DatabaseUnavailable:
    _close_connections()
    return DatabaseUnavailable(sorted(pending), outcomes, cause)


def _store_telemetry(telemetry: list[Inbound]) -> Counter[str]:
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
