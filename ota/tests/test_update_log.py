"""Each vehicle's update log: every status report as stored, applied, stale or refused, in the
API and on the vehicle page."""

from __future__ import annotations

import pytest

from conftest import api_client_for
from console.tests.dashboard_helpers import logged_in
from ota.tests.test_update_truth import STATUS, planned


@pytest.fixture
def reported(vehicle, vehicle_client, offered_update):
    update = planned(vehicle_client, offered_update)
    for body in (
        {"update_id": update.pk, "vmg_state": 1, "percentage": 40, "sequence": 1},
        {"update_id": update.pk, "vmg_state": 4, "sequence": 2, "current_step": "waiting"},
        # Refused: completed without the packages ever being served.
        {"update_id": update.pk, "vmg_state": 6, "sequence": 3, "running_versions": {}},
    ):
        vehicle_client.post(STATUS, body, format="json")
    return update


def test_the_api_lists_every_report_newest_first(viewer, vehicle, reported) -> None:
    response = api_client_for(viewer).get(f"/api/v1/vehicles/{vehicle.vin}/update-log")
    assert response.status_code == 200, response.content
    rows = response.json()["results"]
    assert [row["sequence"] for row in rows] == [3, 2, 1]
    assert rows[-1]["state_before"] == "offered"
    assert rows[-1]["state_after"] == "downloading"
    assert rows[-1]["payload"]["percentage"] == 40
    assert {row["update_id"] for row in rows} == {reported.pk}
    assert rows[0]["outcome"] in ("refused", "applied", "stale")


def test_a_vehicle_reads_its_own_log_only(vehicle_client, vehicle, other_vehicle, reported) -> None:
    assert vehicle_client.get(f"/api/v1/vehicles/{vehicle.vin}/update-log").status_code == 200
    response = vehicle_client.get(f"/api/v1/vehicles/{other_vehicle.vin}/update-log")
    assert response.status_code == 403


def test_an_unknown_vehicle_is_a_404(viewer, registry) -> None:
    response = api_client_for(viewer).get("/api/v1/vehicles/WVWZZZ1JZ3W000000/update-log")
    assert response.status_code == 404


def test_the_vehicle_page_shows_the_log(viewer, vehicle, reported) -> None:
    body = logged_in(viewer).get(f"/vehicles/{vehicle.vin}/").content.decode()
    log = body.split('id="update-log-title"', 1)[1].split("</section>", 1)[0]
    assert log.count("<tr data-report") == 3
    assert "offered → downloading" in log
    assert "40 %" in log
