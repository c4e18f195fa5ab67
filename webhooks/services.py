"""Webhook endpoints and deliveries: every change here goes through these functions.

Deliveries are rows written after the event's transaction commits, then sent by workers
(`webhooks.worker`) that claim due rows with SELECT ... FOR UPDATE SKIP LOCKED, so any number
of workers can run at once and each delivery is sent by one of them at a time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.api import DomainError
from core.audit import record_event
from webhooks.choices import DeliveryStatus, EventType
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-OTA-Signature"
EVENT_HEADER = "X-OTA-Event"
DELIVERY_HEADER = "X-OTA-Delivery"
# Deliveries one worker claims and sends at a time.
CLAIM_BATCH = 10


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: t=<unix time>,v1=<HMAC-SHA256 of "<t>." + body>.

    The timestamp is signed with the body so a receiver can refuse old replays.
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def validate_url(url: str) -> str:
    parts = urlsplit(url.strip())
    allowed = {"https", "http"} if settings.OTA_WEBHOOK_ALLOW_HTTP else {"https"}
    if parts.scheme not in allowed:
        raise DomainError(
            "must be an https:// URL"
            + ("" if "http" in allowed else " (OTA_WEBHOOK_ALLOW_HTTP=0)"),
            field="url",
        )
    if not parts.hostname:
        raise DomainError("must name a host", field="url")
    if parts.username or parts.password:
        raise DomainError("must not carry credentials; the signature authenticates", field="url")
    return url.strip()


def validate_event_types(event_types: list[str]) -> list[str]:
    known = set(EventType.values)
    if not event_types or not isinstance(event_types, list):
        raise DomainError("name at least one event type", field="event_types")
    unknown = [t for t in event_types if t not in known]
    if unknown:
        raise DomainError(
            f"unknown event types {unknown}; known: {sorted(known)}", field="event_types"
        )
    return sorted(set(event_types))


def _facts(endpoint: WebhookEndpoint) -> dict[str, Any]:
    # Never the secret.
    return {
        "name": endpoint.name,
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "active": endpoint.active,
    }


@transaction.atomic
def register_endpoint(
    *, actor: Any, name: str, url: str, event_types: list[str], secret: str = ""
) -> WebhookEndpoint:
    """A new endpoint; without a secret one is generated (shown to staff in the admin)."""
    if not name.strip():
        raise DomainError("must not be empty", field="name")
    endpoint = WebhookEndpoint.objects.create(
        name=name.strip(),
        url=validate_url(url),
        event_types=validate_event_types(event_types),
        secret=secret or secrets.token_urlsafe(32),
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    record_event(
        action="webhooks.endpoint_registered",
        actor=actor,
        object_type="webhook_endpoint",
        object_id=endpoint.pk,
        after=_facts(endpoint),
    )
    return endpoint


@transaction.atomic
def change_endpoint(endpoint: WebhookEndpoint, *, actor: Any, **changes: Any) -> WebhookEndpoint:
    """Change name, url, event_types, active or secret (rotation)."""
    locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    before = _facts(locked)
    if "name" in changes:
        if not str(changes["name"]).strip():
            raise DomainError("must not be empty", field="name")
        locked.name = str(changes.pop("name")).strip()
    if "url" in changes:
        locked.url = validate_url(changes.pop("url"))
    if "event_types" in changes:
        locked.event_types = validate_event_types(changes.pop("event_types"))
    if "active" in changes:
        locked.active = bool(changes.pop("active"))
    rotated = "secret" in changes
    if rotated:
        locked.secret = changes.pop("secret") or secrets.token_urlsafe(32)
    if changes:
        raise DomainError(f"cannot change {sorted(changes)}", field=sorted(changes)[0])
    locked.save()
    record_event(
        action="webhooks.endpoint_changed",
        actor=actor,
        object_type="webhook_endpoint",
        object_id=locked.pk,
        before=before,
        after=_facts(locked),
        details={"secret_rotated": rotated},
    )
    return locked


def enqueue_event(event_type: str, payload: dict[str, Any]) -> int:
    """One pending delivery per active endpoint subscribed to `event_type`; returns how many."""
    endpoints = [
        e for e in WebhookEndpoint.objects.filter(active=True) if event_type in e.event_types
    ]
    if not endpoints:
        return 0
    now = timezone.now()
    event_id = uuid.uuid4()  # one id for the event, whichever endpoint receives it
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint,
            event_id=event_id,
            event_type=event_type,
            payload=payload,
            next_attempt_at=now,
        )
        for endpoint in endpoints
    )
    return len(endpoints)


def _lease() -> timedelta:
    # Long enough for a worker to try every row of its batch at the full timeout.
    return timedelta(seconds=CLAIM_BATCH * (settings.OTA_WEBHOOK_TIMEOUT_SECONDS + 1) + 30)


@transaction.atomic
def claim_due(*, now: datetime, limit: int = CLAIM_BATCH) -> list[WebhookDelivery]:
    """Take up to `limit` due deliveries for this worker: rows other workers hold are skipped,
    and the taken ones are due again only after the lease, should this worker die."""
    due = list(
        WebhookDelivery.objects.select_for_update(skip_locked=True)
        .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    if not due:
        return []
    WebhookDelivery.objects.filter(pk__in=due).update(next_attempt_at=now + _lease())
    return list(WebhookDelivery.objects.filter(pk__in=due).select_related("endpoint"))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer (3xx, not delivered), never followed to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def body_of(delivery: WebhookDelivery) -> bytes:
    document = {
        "id": str(delivery.event_id),
        "type": delivery.event_type,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _post(delivery: WebhookDelivery) -> tuple[int | None, str]:
    """Send one attempt; (HTTP status, error text)."""
    body = body_of(delivery)
    request = urllib.request.Request(
        delivery.endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "ota-server-webhooks/1",
            SIGNATURE_HEADER: sign(delivery.endpoint.secret, int(time.time()), body),
            EVENT_HEADER: delivery.event_type,
            DELIVERY_HEADER: str(delivery.pk),
        },
    )
    try:
        with _opener.open(request, timeout=settings.OTA_WEBHOOK_TIMEOUT_SECONDS) as response:
            response.read(64 * 1024)
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:300]


def backoff(attempts: int) -> timedelta:
    """Delay before attempt `attempts + 1`: doubling from OTA_WEBHOOK_BACKOFF_SECONDS."""
    base = settings.OTA_WEBHOOK_BACKOFF_SECONDS
    return timedelta(
        seconds=min(base * 2 ** (attempts - 1), settings.OTA_WEBHOOK_BACKOFF_MAX_SECONDS)
    )


def deliver(delivery: WebhookDelivery) -> bool:
    """One attempt of a claimed delivery, recorded; True when the endpoint took it (2xx)."""
    started = timezone.now()
    clock = time.monotonic()
    status_code, error = _post(delivery)
    took_ms = int((time.monotonic() - clock) * 1000)
    ok = status_code is not None and 200 <= status_code < 300
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        locked.attempts += 1
        WebhookAttempt.objects.create(
            delivery=locked,
            number=locked.attempts,
            started_at=started,
            duration_ms=took_ms,
            status_code=status_code,
            error=error,
        )
        locked.last_status_code, locked.last_error = status_code, error
        if ok:
            locked.status, locked.delivered_at = DeliveryStatus.DELIVERED, timezone.now()
        elif locked.attempts >= settings.OTA_WEBHOOK_MAX_ATTEMPTS:
            locked.status = DeliveryStatus.FAILED
            record_event(
                action="webhooks.delivery_given_up",
                actor="system:webhooks",
                object_type="webhook_delivery",
                object_id=locked.pk,
                details={
                    "attempts": locked.attempts,
                    "last_error": error,
                    "url": delivery.endpoint.url,
                },
            )
        else:
            locked.next_attempt_at = timezone.now() + backoff(locked.attempts)
        locked.save()
    if not ok:
        logger.warning(
            "webhook delivery %s to %s failed (attempt %d): %s",
            delivery.pk,
            delivery.endpoint.url,
            locked.attempts,
            error,
        )
    return ok


def deliver_due(*, now: datetime | None = None, limit: int = CLAIM_BATCH) -> int:
    """Claim and send one batch; returns how many were tried."""
    now = now or timezone.now()
    # A plain read first: the claim's write transaction (IMMEDIATE on SQLite) only when needed.
    due = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
    if not due.exists():
        return 0
    batch = claim_due(now=now, limit=limit)
    for delivery in batch:
        deliver(delivery)
    return len(batch)


@transaction.atomic
def replay_delivery(delivery: WebhookDelivery, *, actor: Any) -> WebhookDelivery:
    """Send a delivery again (delivered or given up): pending and due now, attempts kept."""
    locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    before = {"status": locked.status, "attempts": locked.attempts}
    locked.status = DeliveryStatus.PENDING
    locked.next_attempt_at = timezone.now()
    locked.save(update_fields=["status", "next_attempt_at"])
    record_event(
        action="webhooks.delivery_replayed",
        actor=actor,
        object_type="webhook_delivery",
        object_id=locked.pk,
        before=before,
        after={"status": locked.status},
        details={"endpoint": locked.endpoint_id, "event_type": locked.event_type},
    )
    return locked
