from __future__ import annotations

import csv
import io
import json

import pytest

from ota.models import OtaUpdate
from ota.tests.conftest import launch_campaign, serve_packages

URL = "/api/v1/audit-events"


def test_audit_export_as_csv_carries_before_and_after(
    viewer_client, vehicle, vehicle_client, fleet_operator, ecm_release, fake_packages
) -> None:
    launch_campaign(fleet_operator, [ecm_release])
    vehicle_client.post("/api/v1/ota/check", {}, format="json")
    serve_packages(OtaUpdate.objects.get(vehicle=vehicle))
    vehicle_client.post(
        "/api/v1/ota/status",
        {"vmg_state": 6, "running_versions": {"ECU_001": "2.0.0", "ECU_017": "2.0.0"}},
        format="json",
    )
    response = viewer_client.get(f"{URL}/export?format=csv&vin={vehicle.vin}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    [row] = [r for r in rows if r["action"] == "ota.update.succeeded"]
    assert json.loads(row["before"]) == {"ECU_001": "1.1.1", "ECU_017": "1.1.3"}
    assert json.loads(row["after"]) == {"ECU_001": "2.0.0", "ECU_017": "2.0.0"}
    assert row["actor_label"] == f"vehicle:{vehicle.vin}"


def test_audit_export_as_json_filters_by_action(viewer_client, fleet_operator, ecm_release) -> None:
    launch_campaign(fleet_operator, [ecm_release])
    response = viewer_client.get(f"{URL}/export?format=json&action=campaign.")
    assert response.status_code == 200
    actions = [event["action"] for event in response.json()]
    assert actions[:2] == ["campaign.created", "campaign.started"]
    assert all(a.startswith("campaign.") for a in actions)


def test_audit_list_is_paginated_for_viewers(viewer_client, fleet_operator, ecm_release) -> None:
    launch_campaign(fleet_operator, [ecm_release])
    body = viewer_client.get(f"{URL}?limit=1").json()
    assert body["count"] >= 2
    assert len(body["results"]) == 1


def test_bad_time_filter_names_the_field(viewer_client) -> None:
    response = viewer_client.get(f"{URL}/export?since=yesterday")
    assert response.status_code == 400
    assert "since" in response.json()["error"]["fields"]


def test_vehicles_cannot_read_the_audit_trail(vehicle_client) -> None:
    assert vehicle_client.get(f"{URL}/export").status_code == 403


@pytest.mark.parametrize("path", ["", "/export"])
def test_a_time_with_an_offset_the_database_lacks_filters_in_utc(
    viewer_client, fleet_operator, ecm_release, path
) -> None:
    launch_campaign(fleet_operator, [ecm_release])
    response = viewer_client.get(f"{URL}{path}", {"since": "0044-05-13T04:01:57-23:39"})
    assert response.status_code == 200, response.content


def test_a_time_utc_puts_before_year_1_names_the_field(viewer_client) -> None:
    response = viewer_client.get(f"{URL}/export", {"until": "0001-01-01T00:00:00+05:00"})
    assert response.status_code == 400
    assert "until" in response.json()["error"]["fields"]
