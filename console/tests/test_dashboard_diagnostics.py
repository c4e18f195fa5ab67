from __future__ import annotations

import pytest

from console.tests.dashboard_helpers import logged_in


def _send(client, vehicle, /, **overrides):
    data = {
        "vehicle": vehicle.vin,
        "target": "ECU_001",
        "service": 0x22,
        "parameters": "F1 90",
        "timeout": 5,
        **overrides,
    }
    return client.post("/diagnostics/send", data)


@pytest.mark.django_db
def test_console_lists_zones_ecus_and_services(fleet_operator, vehicle) -> None:
    body = logged_in(fleet_operator).get(f"/diagnostics/?vehicle={vehicle.vin}").content.decode()
    assert 'id="uds-form"' in body
    assert "Every ECU in ZGW_FRONT" in body
    assert "ECU_100" in body
    assert "0x22 ReadDataByIdentifier" in body


@pytest.mark.django_db
def test_operator_sends_a_read_did_to_one_ecu(fleet_operator, vehicle) -> None:
    from diagnostics.models import DiagnosticRequest

    response = _send(logged_in(fleet_operator), vehicle)
    request = DiagnosticRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/diagnostics/requests/{request.request_id}/"
    assert request.request_hex == "22f190"
    assert request.timeout_ms == 5000
    assert [r.ecu.ecu_id for r in request.results.all()] == ["ECU_001"]


@pytest.mark.django_db
def test_fleet_engineer_sends_to_a_whole_zone(fleet_engineer, vehicle) -> None:
    from diagnostics.models import DiagnosticRequest

    _send(logged_in(fleet_engineer), vehicle, target="ZGW_REAR", service=0x19, parameters="02FF")
    request = DiagnosticRequest.objects.get()
    assert request.scope == "zone"
    assert request.request_hex == "1902ff"
    assert request.results.count() == vehicle.zonal_gateways.get(gateway_id="ZGW_REAR").ecus.count()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"parameters": "F1G0"}, "Parameters: hex bytes only"),
        ({"parameters": "F1"}, "Parameters: ReadDataByIdentifier takes whole 2-byte DIDs"),
        ({"target": "ECU_999"}, "Target: vehicle WVWZZZ1JZ3W386752 has no ECU"),
        ({"timeout": 0}, "Timeout: Ensure this value is greater than or equal to 1"),
        ({"service": 0x99}, "Service: Select a valid choice"),
        ({"vehicle": "1HGCM82633A004352"}, "Vehicle: no vehicle 1HGCM82633A004352"),
    ],
)
def test_bad_request_names_the_field_and_stores_nothing(
    fleet_operator, vehicle, overrides, message
) -> None:
    from diagnostics.models import DiagnosticRequest

    response = _send(logged_in(fleet_operator), vehicle, **overrides)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not DiagnosticRequest.objects.exists()


@pytest.mark.django_db
def test_request_page_shows_each_ecu_answer(fleet_operator, vehicle) -> None:
    from diagnostics.models import DiagnosticRequest
    from diagnostics.services.remote import record_diagnostic_response

    client = logged_in(fleet_operator)
    _send(client, vehicle, target="ZGW_CHASSIS")
    request = DiagnosticRequest.objects.get()
    first, second = [r.ecu.ecu_id for r in request.results.order_by("ecu__ecu_id")[:2]]
    answer = "62f190" + vehicle.vin.encode().hex()
    record_diagnostic_response(
        vehicle=vehicle,
        response={
            "request_id": str(request.request_id),
            "results": [
                {"ecu_id": first, "response_hex": answer},
                {"ecu_id": second, "response_hex": "7f2231"},
            ],
        },
    )
    body = client.get(f"/diagnostics/requests/{request.request_id}/").content.decode()
    assert f'data-ecu="{first}" data-outcome="positive"' in body
    assert vehicle.vin in body
    assert f'data-ecu="{second}" data-outcome="negative"' in body
    assert "requestOutOfRange" in body or "31" in body


@pytest.mark.django_db
def test_unknown_diagnostic_request_is_not_found(viewer) -> None:
    response = logged_in(viewer).get("/diagnostics/requests/0b7f2a52-8a0d-4c55-9f0e-7d3c2a1b9e01/")
    assert response.status_code == 404
