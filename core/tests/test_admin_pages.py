from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

REGISTERED = sorted(
    (model._meta.app_label, model._meta.model_name) for model in admin.site._registry
)


@pytest.fixture
def admin_client_with_fleet(admin_user, vehicle) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_every_app_registers_its_models() -> None:
    apps = {app for app, _ in REGISTERED}
    assert {"vehicles", "ecus", "firmware", "ota", "diagnostics", "pqc", "core"} <= apps


@pytest.mark.parametrize(("app", "model"), REGISTERED)
def test_changelist_and_search_render(admin_client_with_fleet, app: str, model: str) -> None:
    url = reverse(f"admin:{app}_{model}_changelist")
    assert admin_client_with_fleet.get(url).status_code == 200
    assert admin_client_with_fleet.get(url, {"q": "WVWZZZ"}).status_code == 200


def test_vehicle_page_lists_ecus_grouped_by_zone(admin_client_with_fleet, vehicle) -> None:
    # Move ECU_001 behind the rear gateway: grouping by zone must now list it after the front ECUs.
    rear = vehicle.zonal_gateways.get(gateway_id="ZGW_REAR")
    vehicle.ecus.filter(ecu_id="ECU_001").update(zonal_gateway=rear)
    response = admin_client_with_fleet.get(
        reverse("admin:vehicles_vehicle_change", args=[vehicle.pk])
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "ECU_100" in body
    assert body.index("ECU_020") < body.index("ECU_001") < body.index("ECU_022")


def test_operators_without_staff_status_cannot_open_the_admin(fleet_operator) -> None:
    client = Client()
    client.force_login(fleet_operator)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302


def test_admin_lists_show_times_in_24_hour_utc(admin_client_with_fleet) -> None:
    """The admin spells times as the console does (2026-12-05 13:05:09), not "1:05 p.m."."""
    import datetime

    from diagnostics.models import InboundDrop

    InboundDrop.objects.create(
        reason="bad-json",
        count=1,
        last_at=datetime.datetime(2026, 12, 5, 13, 5, 9, tzinfo=datetime.UTC),
    )
    body = admin_client_with_fleet.get(reverse("admin:diagnostics_inbounddrop_changelist"))
    text = body.content.decode()
    assert "2026-12-05 13:05:09" in text
    assert "p.m." not in text
