"""Outbound MQTT: every server->vehicle message leaves after the database transaction commits."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any, Protocol

from django.db import transaction

from core import metrics
from core.mqtt import schemas, topics
from core.mqtt.connection import broker_address, client_id, new_client

logger = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None: ...


class PahoPublisher:
    """One connection per process; paho queues QoS 1 messages while it is (re)connecting."""

    def __init__(self) -> None:
        address = broker_address("bridge")
        self.client = new_client(address, client_id=client_id("pub"), persistent=False)
        self.client.connect_async(address.host, address.port, keepalive=60)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)
        metrics.MQTT_OUT.inc()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


_lock = threading.Lock()
_publisher: Publisher | None = None


def set_publisher(publisher: Publisher | None) -> Publisher | None:
    """Install the process-wide publisher (tests install a recorder); returns the previous one."""
    global _publisher
    with _lock:
        previous, _publisher = _publisher, publisher
    return previous


def get_publisher() -> Publisher:
    global _publisher
    with _lock:
        if _publisher is None:
            _publisher = PahoPublisher()
        return _publisher


def encode(kind: str, document: dict[str, Any]) -> bytes:
    """Serialise an outbound document, refusing one that breaks its own published schema."""
    errors = schemas.schema_errors(kind, document)
    if errors:
        raise ValueError(f"outbound {kind} message breaks its schema: {errors}")
    return json.dumps(document, separators=(",", ":")).encode()


def publish_after_commit(
    vin: str, kind: str, document: dict[str, Any], *, retain: bool = False
) -> None:
    """Publish `document` to vehicle/{vin}/{kind} at QoS 1 once the current transaction commits."""
    topic = topics.topic_for(vin, kind)
    payload = encode(kind, document)

    def send() -> None:
        try:
            get_publisher().publish(topic, payload, qos=1, retain=retain)
        except Exception:
            # The row is committed; its deadline turns a lost publish into a visible timeout.
            logger.exception("publish to %s failed", topic)

    transaction.on_commit(send)


def publish_desired_state(*, vin: str, pending_update: dict[str, Any] | None) -> None:
    """Retain the vehicle's pending update (or None) so a reconnecting vehicle learns it at once."""
    document = {
        "vin": vin,
        "updated_at": datetime.now(tz=UTC).isoformat(),
        "pending_update": pending_update,
    }
    publish_after_commit(vin, topics.DESIRED_STATE, document, retain=True)
