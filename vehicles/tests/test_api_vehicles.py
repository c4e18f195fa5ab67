from __future__ import annotations

from conftest import api_client_for


def test_vehicle_reads_itself(vehicle, vehicle_client) -> None:
    response = vehicle_client.get(f"/api/v1/vehicles/{vehicle.vin}")
    assert response.status_code == 200
    assert response.json()["vin"] == vehicle.vin


def test_vehicle_cannot_read_another_vehicle(vehicle_client, other_vehicle) -> None:
    response = vehicle_client.get(f"/api/v1/vehicles/{other_vehicle.vin}")
    assert response.status_code == 403


def test_viewer_reads_any_vehicle_and_gets_404_for_unknown(viewer_client, vehicle) -> None:
    assert viewer_client.get(f"/api/v1/vehicles/{vehicle.vin}").status_code == 200
    assert viewer_client.get("/api/v1/vehicles/5YJ3E1EA7KF317009").status_code == 404


def test_user_without_a_role_is_refused(vehicle, django_user_model) -> None:
    nobody = django_user_model.objects.create_user("nobody")
    assert api_client_for(nobody).get(f"/api/v1/vehicles/{vehicle.vin}").status_code == 403


def test_fleet_list_for_viewers(viewer_client, vehicle, other_vehicle) -> None:
    body = viewer_client.get("/api/v1/vehicles?model_year=2025").json()
    assert [v["vin"] for v in body["results"]] == [other_vehicle.vin]


def test_software_history_lists_changes_newest_first(
    vehicle, vehicle_client, viewer_client
) -> None:
    vehicle_client.put("/api/v1/ecus/ECU_001/version", {"sw_version": "1.2.0"}, format="json")
    vehicle_client.put("/api/v1/ecus/ECU_001/version", {"sw_version": "1.3.0"}, format="json")
    body = viewer_client.get(
        f"/api/v1/vehicles/{vehicle.vin}/software-history?ecu_id=ECU_001"
    ).json()
    assert [(c["from_version"], c["to_version"]) for c in body["results"]] == [
        ("1.2.0", "1.3.0"),
        ("1.1.1", "1.2.0"),
    ]


def test_software_history_of_another_vehicle_is_forbidden(vehicle_client, other_vehicle) -> None:
    url = f"/api/v1/vehicles/{other_vehicle.vin}/software-history"
    assert vehicle_client.get(url).status_code == 403


def test_vehicle_update_records_are_listed(vehicle, viewer_client) -> None:
    body = viewer_client.get(f"/api/v1/vehicles/{vehicle.vin}/updates").json()
    assert body["count"] == 0
