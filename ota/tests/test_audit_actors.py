"""Each audit event names who caused it: the operator, the vehicle, or the server component."""

from __future__ import annotations

import json
from datetime import timedelta

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core.models import AuditEvent
from ota.campaigns import create_campaign
from ota.engine import run_tick
from ota.models import Campaign, OtaUpdate
from ota.tests.conftest import launch_campaign
from telematics.ingest import handle_message

CAMPAIGNS = "/api/v1/campaigns"


def _actors(action: str) -> list[tuple[str, int | None]]:
    return list(
        AuditEvent.objects.filter(action=action).order_by("id").values_list("actor_label", "actor")
    )


def test_operator_workflows_name_the_operator_and_the_worker_names_itself(
    operator_client, fleet_operator, vehicle, ecm_release, fake_packages
) -> None:
    created = operator_client.post(
        CAMPAIGNS,
        {"name": "ECM 2.0", "firmware_ids": [ecm_release.pk], "wave_percentages": [100]},
        format="json",
    ).json()
    assert operator_client.post(f"{CAMPAIGNS}/{created['id']}/start").status_code < 300
    run_tick()
    assert operator_client.post(f"{CAMPAIGNS}/{created['id']}/pause").status_code < 300

    operator = ("user:olga", fleet_operator.pk)
    assert _actors("campaign.created") == [operator]
    assert _actors("campaign.started") == [operator]
    assert _actors("campaign.paused") == [operator]
    assert _actors("campaign.fanned_out") == [("system:campaign-worker", None)]
    assert Campaign.objects.get(pk=created["id"]).created_by == fleet_operator


def test_a_vehicle_report_over_http_names_the_vehicle(vehicle, vehicle_client, offered_update):
    vehicle_client.post("/api/v1/ota/check", {}, format="json")
    response = vehicle_client.post(
        "/api/v1/ota/status",
        {"update_id": offered_update.pk, "vmg_state": 5, "error": "flash error", "sequence": 1},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert _actors("ota.update.failed") == [(f"vehicle:{vehicle.vin}", None)]


def test_a_vehicle_report_over_mqtt_names_the_vehicle(vehicle, offered_update) -> None:
    document = {
        "vin": vehicle.vin,
        "report_id": "r-1",
        "update_id": offered_update.pk,
        "vmg_state": 5,
        "error": "flash error",
    }
    topic = f"vehicle/{vehicle.vin}/ota/status"
    assert handle_message(topic, json.dumps(document).encode()) == "accepted"
    assert _actors("ota.update.failed") == [(f"vehicle:{vehicle.vin}", None)]


def test_a_timeout_names_the_worker_not_the_silent_vehicle(
    vehicle, fleet_operator, ecm_release, fake_packages
) -> None:
    launch_campaign(fleet_operator, [ecm_release], vehicle_timeout_seconds=600, max_attempts=1)
    update = OtaUpdate.objects.get(vehicle=vehicle)
    assert run_tick(now=timezone.now() + timedelta(seconds=601)).expired == 1
    update.refresh_from_db()
    assert update.state == "failed"
    assert _actors("ota.update.failed") == [("system:campaign-worker", None)]


def test_a_dashboard_action_names_the_operator_who_clicked(
    fleet_operator, other_operator, ecm_release
) -> None:
    campaign = create_campaign(operator=fleet_operator, name="c", firmware_ids=[ecm_release.pk])
    browser = Client()
    browser.force_login(other_operator)
    response = browser.post(reverse("console:campaign-action", args=[campaign.pk, "start"]))
    assert response.status_code == 302
    assert _actors("campaign.created") == [("user:olga", fleet_operator.pk)]
    assert _actors("campaign.started") == [("user:oscar", other_operator.pk)]
