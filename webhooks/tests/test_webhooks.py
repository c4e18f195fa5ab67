"""Webhooks: registered through the service, signed, retried with backoff, replayed in the admin."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection, transaction
from django.utils import timezone

from core.api import DomainError
from core.events import campaign_group, publish_event, vehicle_group
from core.models import AuditEvent
from ota.tests import conftest as ota_fixtures
from webhooks import services
from webhooks.choices import DeliveryStatus, EventType
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

ecm_release = ota_fixtures.ecm_release
fake_packages = ota_fixtures.fake_packages
published = ota_fixtures.published


class Receiver:
    """A loopback HTTP endpoint answering with the queued status codes (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[Message, bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.headers, body))
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ota"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def endpoint(receiver, admin_user) -> WebhookEndpoint:
    return services.register_endpoint(
        actor=admin_user,
        name="fleet ops",
        url=receiver.url,
        event_types=[EventType.VEHICLE_UPDATE, EventType.CAMPAIGN_PROGRESS],
        secret="s3cret-for-tests",
    )


def update_event(vin: str = "WVWZZZ1JZ3W386752") -> dict:
    return {"kind": "update_state", "update_id": 1, "vin": vin, "campaign_id": 3, "state": "failed"}


def verify(secret: str, headers: Message, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in headers[services.SIGNATURE_HEADER].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(parts["v1"], expected.hexdigest())


@pytest.mark.parametrize(
    ("url", "allow_http", "message"),
    [
        ("ftp://127.0.0.1/x", True, "https"),
        ("http://127.0.0.1/x", False, "https"),
        ("https://user:pw@127.0.0.1/x", True, "credentials"),
        ("https:///nohost", True, "host"),
    ],
)
def test_bad_urls_are_refused_naming_the_field(settings, admin_user, url, allow_http, message):
    settings.OTA_WEBHOOK_ALLOW_HTTP = allow_http
    with pytest.raises(DomainError) as refused:
        services.register_endpoint(
            actor=admin_user, name="x", url=url, event_types=[EventType.VEHICLE_UPDATE]
        )
    assert refused.value.field == "url" and message in refused.value.message
    assert not WebhookEndpoint.objects.exists()


def test_unknown_event_types_are_refused(admin_user) -> None:
    with pytest.raises(DomainError) as refused:
        services.register_endpoint(
            actor=admin_user, name="x", url="https://hooks.example/x", event_types=["everything"]
        )
    assert refused.value.field == "event_types"


def test_registration_is_audited_without_the_secret(endpoint) -> None:
    event = AuditEvent.objects.get(action="webhooks.endpoint_registered")
    assert event.after["url"] == endpoint.url
    assert "s3cret" not in json.dumps(event.after)


def test_an_event_becomes_one_signed_delivery_after_commit(
    endpoint, receiver, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        # The workflow publishes to the vehicle's and the campaign's groups: one delivery.
        publish_event(vehicle_group("WVWZZZ1JZ3W386752"), update_event())
        publish_event(campaign_group(3), update_event())
        publish_event("fleet", {"kind": "telemetry", "vin": "WVWZZZ1JZ3W386752"})
    [delivery] = WebhookDelivery.objects.all()
    assert services.deliver_due() == 1
    [(headers, body)] = receiver.requests
    assert verify("s3cret-for-tests", headers, body)
    assert not verify("another-secret", headers, body)
    document = json.loads(body)
    assert document["type"] == "vehicle.update"
    assert document["id"] == str(delivery.event_id)
    assert document["data"]["state"] == "failed" and "kind" not in document["data"]
    assert headers[services.EVENT_HEADER] == "vehicle.update"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)


def test_a_real_campaign_launch_notifies_its_progress(
    endpoint, receiver, vehicle, fleet_operator, ecm_release, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        campaign = ota_fixtures.launch_campaign(fleet_operator, [ecm_release])
    types = set(WebhookDelivery.objects.values_list("event_type", flat=True))
    assert EventType.CAMPAIGN_PROGRESS in types
    services.deliver_due(limit=50)
    bodies = [json.loads(body) for _headers, body in receiver.requests]
    assert any(b["data"].get("campaign_id") == campaign.pk for b in bodies)


def test_failures_back_off_then_deliver_with_every_attempt_recorded(endpoint, receiver) -> None:
    receiver.answers = [500, 503]
    services.enqueue_event(EventType.VEHICLE_UPDATE, {"vin": "WVWZZZ1JZ3W386752"})
    now = timezone.now()
    assert services.deliver_due(now=now) == 1
    delivery = WebhookDelivery.objects.get()
    first_retry = delivery.next_attempt_at - now
    assert timedelta(seconds=29) < first_retry <= timedelta(seconds=31)
    assert services.deliver_due(now=now + timedelta(seconds=10)) == 0  # not due yet
    assert services.deliver_due(now=now + timedelta(seconds=31)) == 1
    delivery.refresh_from_db()
    assert delivery.next_attempt_at - timezone.now() > timedelta(seconds=58)  # doubled
    assert services.deliver_due(now=now + timedelta(seconds=200)) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    codes = list(WebhookAttempt.objects.order_by("number").values_list("status_code", flat=True))
    assert codes == [500, 503, 200]


def test_a_redirect_is_not_followed_and_counts_as_a_failure(endpoint, receiver) -> None:
    receiver.answers = [302]
    services.enqueue_event(EventType.VEHICLE_UPDATE, {"vin": "WVWZZZ1JZ3W386752"})
    services.deliver_due()
    assert len(receiver.requests) == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == ("pending", 302)


def test_an_unreachable_endpoint_is_given_up_after_max_attempts_and_audited(
    settings, admin_user
) -> None:
    settings.OTA_WEBHOOK_MAX_ATTEMPTS = 2
    settings.OTA_WEBHOOK_TIMEOUT_SECONDS = 1.0
    services.register_endpoint(
        actor=admin_user,
        name="gone",
        url="http://127.0.0.1:9/nothing-listens",
        event_types=[EventType.DIAGNOSTICS_STATUS],
    )
    services.enqueue_event(EventType.DIAGNOSTICS_STATUS, {"request_id": "r"})
    services.deliver_due()
    services.deliver_due(now=timezone.now() + timedelta(hours=1))
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 2)
    assert "ConnectionRefusedError" in delivery.last_error or "URLError" in delivery.last_error
    assert AuditEvent.objects.filter(action="webhooks.delivery_given_up").count() == 1


def test_the_admin_lists_attempts_and_replays_through_the_service(
    endpoint, receiver, admin_client, admin_user
) -> None:
    services.enqueue_event(EventType.VEHICLE_UPDATE, {"vin": "WVWZZZ1JZ3W386752"})
    services.deliver_due()
    delivery = WebhookDelivery.objects.get()
    page = admin_client.get(f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/")
    assert page.status_code == 200 and b"vehicle.update" in page.content
    response = admin_client.post(
        "/admin/webhooks/webhookdelivery/",
        {"action": "replay", "_selected_action": [delivery.pk]},
    )
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    replayed = AuditEvent.objects.get(action="webhooks.delivery_replayed")
    assert (
        replayed.actor_label == admin_user.username or admin_user.username in replayed.actor_label
    )
    services.deliver_due()
    assert len(receiver.requests) == 2
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 2


def test_the_admin_registers_endpoints_through_the_service(admin_client, settings) -> None:
    settings.OTA_WEBHOOK_ALLOW_HTTP = False
    form = {"name": "ops", "url": "http://127.0.0.1/x", "event_types": ["vehicle.update"]}
    response = admin_client.post("/admin/webhooks/webhookendpoint/add/", {**form, "active": "on"})
    assert response.status_code == 200 and b"https" in response.content
    assert not WebhookEndpoint.objects.exists()
    form["url"] = "https://hooks.example/ota"
    response = admin_client.post("/admin/webhooks/webhookendpoint/add/", {**form, "active": "on"})
    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert len(endpoint.secret) >= 32
    assert AuditEvent.objects.filter(
        action="webhooks.endpoint_registered", object_id=str(endpoint.pk)
    ).exists()
    response = admin_client.post(
        f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/",
        {**form, "event_types": ["diagnostics.status"]},
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.active, endpoint.event_types) == (False, ["diagnostics.status"])
    assert AuditEvent.objects.filter(action="webhooks.endpoint_changed").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_claim_the_same_delivery(endpoint) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED needs PostgreSQL (SQLite serialises writers instead)")
    for n in range(4):
        services.enqueue_event(EventType.VEHICLE_UPDATE, {"n": n})
    held, release = threading.Event(), threading.Event()
    first_claim: list[int] = []

    def other_worker() -> None:
        try:
            with transaction.atomic():
                rows = list(
                    WebhookDelivery.objects.select_for_update(skip_locked=True)
                    .order_by("next_attempt_at")
                    .values_list("pk", flat=True)[:2]
                )
                first_claim.extend(rows)
                held.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert held.wait(10)
        mine = [d.pk for d in services.claim_due(now=timezone.now(), limit=10)]
    finally:
        release.set()
        thread.join(10)
    assert len(first_claim) == 2 and len(mine) == 2
    assert not set(first_claim) & set(mine)
