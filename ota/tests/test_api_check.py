from __future__ import annotations

from conftest import api_client_for, vehicle_api_client
from ota.choices import UpdateState
from ota.models import OtaUpdate
from ota.tests.conftest import launch_campaign, make_release

URL = "/api/v1/ota/check"


def test_vehicle_without_an_offer_has_no_update(vehicle_client) -> None:
    response = vehicle_client.post(URL, {}, format="json")
    assert response.status_code == 200
    assert response.json()["update_available"] is False
    assert response.json()["items"] == []


def test_check_returns_the_plan_with_zone_packages(
    vehicle_client, offered_update, fake_packages
) -> None:
    response = vehicle_client.post(URL, {}, format="json")
    body = response.json()
    assert response.status_code == 200
    assert body["update_available"] is True
    assert body["update_id"] == offered_update.pk
    assert [i["ecu_id"] for i in body["items"]] == ["ECU_001", "ECU_017"]
    assert body["items"][0]["from_version"] == "1.1.1"
    assert body["items"][0]["to_version"] == "2.0.0"
    [package] = body["packages"]
    assert package["zonal_gateway_id"] == "ZGW_FRONT"
    assert package["download_url"].endswith(f"/api/v1/ota/package/{package['package_id']}")
    assert package["size"] == body["total_size"] == 2000
    assert len(package["sha256"]) == 64


def test_second_check_reuses_the_stored_plan(vehicle_client, offered_update, fake_packages) -> None:
    vehicle_client.post(URL, {}, format="json")
    vehicle_client.post(URL, {}, format="json")
    assert len(fake_packages.calls) == 1


def test_check_of_a_100_ecu_vehicle_takes_a_constant_number_of_queries(
    vehicle_client, offered_update, django_assert_max_num_queries
) -> None:
    # Ten releases across ECU types: the count must not grow with ECUs or releases.
    for code in ("TCM", "ADAS", "RADAR", "CAM", "LIGHT", "WIPER", "HVAC", "BMS", "DOOR"):
        make_release(code, "9.0.0", hardware=("2.0", "2.1"))
    # The vehicle row lock that orders the plan's writes is one of them.
    with django_assert_max_num_queries(14):
        response = vehicle_client.post(URL, {}, format="json")
    assert response.status_code == 200
    # Later checks: the vehicle (authentication) and its open update with the stored plan.
    with django_assert_max_num_queries(2):
        vehicle_client.post(URL, {}, format="json")


def test_unsatisfiable_plan_is_refused_and_the_update_failed(
    vehicle, vehicle_client, fleet_operator, registry, fake_packages
) -> None:
    make_release("TCM", "3.0.0", hardware=("2.0",))
    ecm = make_release("ECM", "2.0.0", hardware=("2.0",), requires={"TCM": "3.0.0"})
    launch_campaign(fleet_operator, [ecm])
    body = vehicle_client.post(URL, {}, format="json").json()
    assert body["update_available"] is False
    assert "ECU_018" in body["refused"]
    update = OtaUpdate.objects.get(vehicle=vehicle)
    assert update.state == UpdateState.FAILED
    assert update.next_action_at is None  # retrying cannot help


def test_check_for_another_vin_is_forbidden(vehicle_client, other_vehicle) -> None:
    response = vehicle_client.post(URL, {"vin": other_vehicle.vin}, format="json")
    assert response.status_code == 403


def test_operators_cannot_use_the_vehicle_check(fleet_operator) -> None:
    response = api_client_for(fleet_operator).post(URL, {}, format="json")
    assert response.status_code == 403


def test_unregistered_certificate_is_told_to_register(registry) -> None:
    response = vehicle_api_client("5YJ3E1EA7KF317000").post(URL, {}, format="json")
    assert response.status_code == 404
    assert "register" in response.json()["error"]["message"]


def test_package_request_returns_one_zone(vehicle_client, offered_update, fake_packages) -> None:
    response = vehicle_client.post(
        "/api/v1/ota/package", {"zonal_gateway_id": "ZGW_FRONT"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["update_id"] == offered_update.pk
    assert [p["zonal_gateway_id"] for p in response.json()["packages"]] == ["ZGW_FRONT"]


def test_package_request_for_a_zone_outside_the_plan_names_the_field(
    vehicle_client, offered_update, fake_packages
) -> None:
    response = vehicle_client.post(
        "/api/v1/ota/package", {"zonal_gateway_id": "ZGW_REAR"}, format="json"
    )
    assert response.status_code == 400
    assert "zonal_gateway_id" in response.json()["error"]["fields"]


def test_package_request_for_another_vehicles_update_is_not_found(
    offered_update, other_vehicle, fake_packages
) -> None:
    client = vehicle_api_client(other_vehicle.vin)
    response = client.post("/api/v1/ota/package", {"update_id": offered_update.pk}, format="json")
    assert response.status_code == 404
