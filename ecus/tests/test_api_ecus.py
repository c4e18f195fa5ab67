from __future__ import annotations

from core.models import AuditEvent
from ecus.models import Ecu, SoftwareChange


def test_vehicle_lists_its_own_ecus(vehicle_client, other_vehicle) -> None:
    body = vehicle_client.get("/api/v1/ecus").json()
    assert body["count"] == 100
    assert {row["vin"] for row in body["results"]} == {"WVWZZZ1JZ3W386752"}


def test_ecu_list_is_filtered_and_takes_constant_queries(
    vehicle_client, django_assert_max_num_queries
) -> None:
    with django_assert_max_num_queries(4):
        body = vehicle_client.get("/api/v1/ecus?zone=ZGW_FRONT&ecu_type=ECM").json()
    assert [row["ecu_id"] for row in body["results"]] == ["ECU_001", "ECU_009", "ECU_017"]


def test_operator_must_name_the_vehicle(viewer_client, vehicle) -> None:
    response = viewer_client.get("/api/v1/ecus")
    assert response.status_code == 400
    assert "vin" in response.json()["error"]["fields"]
    assert viewer_client.get(f"/api/v1/ecus?vin={vehicle.vin}").json()["count"] == 100


def test_ecu_detail_for_vehicle_and_viewer(vehicle, vehicle_client, viewer_client) -> None:
    assert vehicle_client.get("/api/v1/ecus/ECU_001").json()["ecu_type"] == "ECM"
    detail = viewer_client.get(f"/api/v1/ecus/ECU_001?vin={vehicle.vin}").json()
    assert detail["zonal_gateway_id"] == "ZGW_FRONT"
    assert vehicle_client.get("/api/v1/ecus/ECU_999").status_code == 404


def test_vehicle_cannot_reach_another_vehicles_ecu(vehicle_client, other_vehicle) -> None:
    assert vehicle_client.get(f"/api/v1/ecus/ECU_001?vin={other_vehicle.vin}").status_code == 403
    assert vehicle_client.get(f"/api/v1/ecus?vin={other_vehicle.vin}").status_code == 403


def test_vehicle_reports_an_ecu_version(vehicle, vehicle_client) -> None:
    response = vehicle_client.put(
        "/api/v1/ecus/ECU_001/version", {"sw_version": "1.2.0", "hw_version": "2.0"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["sw_version"] == "1.2.0"
    assert SoftwareChange.objects.get(vehicle=vehicle).source == "ecu_report"
    assert AuditEvent.objects.get(action="ecu.version_reported").before == {"ECU_001": "1.1.1"}


def test_bad_ecu_version_names_the_field_and_changes_nothing(vehicle, vehicle_client) -> None:
    for body, field in [
        ({"sw_version": "latest"}, "sw_version"),
        ({}, "sw_version"),
        ({"sw_version": "1.0.0", "hw_version": "x.y"}, "hw_version"),
    ]:
        response = vehicle_client.put("/api/v1/ecus/ECU_001/version", body, format="json")
        assert response.status_code == 400
        assert field in response.json()["error"]["fields"]
    assert Ecu.objects.get(vehicle=vehicle, ecu_id="ECU_001").sw_version == "1.1.1"
    assert not SoftwareChange.objects.exists()


def test_unknown_ecu_version_report_is_404(vehicle_client) -> None:
    response = vehicle_client.put(
        "/api/v1/ecus/ECU_999/version", {"sw_version": "1.0.0"}, format="json"
    )
    assert response.status_code == 404


def test_operators_cannot_report_versions(operator_client, vehicle) -> None:
    response = operator_client.put(
        "/api/v1/ecus/ECU_001/version", {"sw_version": "9.0.0"}, format="json"
    )
    assert response.status_code == 403
