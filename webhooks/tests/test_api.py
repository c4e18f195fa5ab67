"""Operator API for webhooks: registration, changes, deliveries and replays, through the service."""

from __future__ import annotations

import pytest

from core.models import AuditEvent
from webhooks import services
from webhooks.choices import DeliveryStatus, EventType
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/v1/webhooks/endpoints"
DELIVERIES = "/api/v1/webhooks/deliveries"


def test_an_operator_registers_an_endpoint_and_sees_its_secret_once(operator_client) -> None:
    body = {"name": "ops", "url": "https://hooks.example/ota", "event_types": ["vehicle.update"]}
    response = operator_client.post(ENDPOINTS, body, format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert len(created["secret"]) >= 32
    listed = operator_client.get(ENDPOINTS).json()
    assert [e["url"] for e in listed] == ["https://hooks.example/ota"]
    assert "secret" not in listed[0]
    assert AuditEvent.objects.filter(action="webhooks.endpoint_registered").count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "url": "ftp://hooks.example/", "event_types": ["vehicle.update"]}, "url"),
        ({"name": "x", "url": "https://hooks.example/", "event_types": ["all"]}, "event_types"),
        ({"name": "x", "url": "https://hooks.example/", "event_types": []}, "event_types"),
        ({"url": "https://hooks.example/", "event_types": ["vehicle.update"]}, "name"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(operator_client, body, field):
    response = operator_client.post(ENDPOINTS, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not WebhookEndpoint.objects.exists()


def test_viewers_and_vehicles_are_refused(viewer_client, vehicle_client) -> None:
    assert viewer_client.get(ENDPOINTS).status_code == 403
    assert vehicle_client.get(DELIVERIES).status_code in (403, 404)


def test_an_endpoint_is_deactivated_and_its_secret_rotated(operator_client, fleet_operator):
    endpoint = services.register_endpoint(
        actor=fleet_operator,
        name="ops",
        url="https://hooks.example/",
        event_types=["vehicle.update"],
    )
    old_secret = endpoint.secret
    response = operator_client.patch(
        f"{ENDPOINTS}/{endpoint.pk}", {"active": False, "rotate_secret": True}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["active"] is False
    endpoint.refresh_from_db()
    assert endpoint.secret != old_secret and response.json()["secret"] == endpoint.secret
    changed = AuditEvent.objects.get(action="webhooks.endpoint_changed")
    assert changed.details == {"secret_rotated": True}
    assert operator_client.patch(f"{ENDPOINTS}/999999", {}, format="json").status_code == 404


def test_deliveries_are_listed_filtered_and_replayed(operator_client, fleet_operator) -> None:
    services.register_endpoint(
        actor=fleet_operator,
        name="ops",
        url="https://hooks.example/",
        event_types=["vehicle.update"],
    )
    services.enqueue_event(EventType.VEHICLE_UPDATE, {"vin": "WVWZZZ1JZ3W386752"})
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED)
    page = operator_client.get(DELIVERIES, {"status": "failed"}).json()
    assert [d["id"] for d in page["results"]] == [delivery.pk]
    assert operator_client.get(DELIVERIES, {"status": "pending"}).json()["results"] == []
    refused = operator_client.get(DELIVERIES, {"status": "lost"})
    assert refused.status_code == 400 and "status" in refused.json()["error"]["fields"]
    response = operator_client.post(f"{DELIVERIES}/{delivery.pk}/replay")
    assert response.status_code == 202 and response.json()["status"] == "pending"
    assert AuditEvent.objects.filter(action="webhooks.delivery_replayed").count() == 1
