from __future__ import annotations

from conftest import api_client_for, vehicle_api_client
from core.models import AuditEvent
from vehicles.models import Vehicle

URL = "/api/v1/vehicles/register"
VIN = "5YJ3E1EA7KF317002"
BODY = {"vin": VIN, "model_name": "Aurora", "model_year": 2026, "vmg_id": "VMG-7"}


def test_vehicle_registers_itself_and_binds_its_certificate(registry) -> None:
    client = vehicle_api_client(VIN, cert_fingerprint="f" * 64, cert_serial="0A")
    response = client.post(URL, BODY, format="json")
    assert response.status_code == 201
    assert response.json()["ecu_count"] == 100
    assert len(response.json()["zonal_gateways"]) == 6
    vehicle = Vehicle.objects.get(vin=VIN)
    assert vehicle.certificate_fingerprint == "f" * 64
    assert AuditEvent.objects.filter(action="vehicle.registered", vehicle_vin=VIN).exists()


def test_registering_again_with_the_same_certificate_is_idempotent(registry) -> None:
    client = vehicle_api_client(VIN, cert_fingerprint="f" * 64)
    client.post(URL, BODY, format="json")
    response = client.post(URL, BODY, format="json")
    assert response.status_code == 200
    assert Vehicle.objects.count() == 1


def test_vin_must_match_the_certificate(registry) -> None:
    client = vehicle_api_client("1HGCM82633A004352", cert_fingerprint="f" * 64)
    response = client.post(URL, BODY, format="json")
    assert response.status_code == 403
    assert not Vehicle.objects.exists()


def test_operator_pre_registers_and_the_vehicle_binds_later(registry, fleet_operator) -> None:
    response = api_client_for(fleet_operator).post(URL, BODY, format="json")
    assert response.status_code == 201
    assert Vehicle.objects.get(vin=VIN).certificate_fingerprint == ""
    bound = vehicle_api_client(VIN, cert_fingerprint="e" * 64).post(URL, BODY, format="json")
    assert bound.status_code == 200
    assert Vehicle.objects.get(vin=VIN).certificate_fingerprint == "e" * 64
    assert AuditEvent.objects.filter(action="vehicle.certificate_bound").count() == 1


def test_another_certificate_for_a_bound_vin_is_refused(registry) -> None:
    vehicle_api_client(VIN, cert_fingerprint="f" * 64).post(URL, BODY, format="json")
    response = vehicle_api_client(VIN, cert_fingerprint="0" * 64).post(URL, BODY, format="json")
    assert response.status_code in (401, 403)
    assert Vehicle.objects.get(vin=VIN).certificate_fingerprint == "f" * 64


def test_operator_registering_a_known_vin_gets_409(vehicle, fleet_operator) -> None:
    body = {**BODY, "vin": vehicle.vin}
    response = api_client_for(fleet_operator).post(URL, body, format="json")
    assert response.status_code == 409
    assert "vin" in response.json()["error"]["fields"]


def test_bad_registration_names_the_field_and_stores_nothing(registry, fleet_operator) -> None:
    client = api_client_for(fleet_operator)
    for body, field in [
        ({**BODY, "vin": "IOQ"}, "vin"),
        ({**BODY, "model_year": "soon"}, "model_year"),
        ({k: v for k, v in BODY.items() if k != "model_name"}, "model_name"),
    ]:
        response = client.post(URL, body, format="json")
        assert response.status_code == 400
        assert field in response.json()["error"]["fields"]
    assert not Vehicle.objects.exists()


def test_viewer_cannot_register(registry, viewer) -> None:
    assert api_client_for(viewer).post(URL, BODY, format="json").status_code == 403


def test_registration_records_the_certificate_expiry(registry) -> None:
    """Registered, the vehicle shows up in the fleet's certificate-expiry filter at once."""
    client = vehicle_api_client(
        VIN, cert_fingerprint="f" * 64, cert_not_after="2027-03-01T12:00:00+00:00"
    )
    assert client.post(URL, BODY, format="json").status_code == 201
    vehicle = Vehicle.objects.get(vin=VIN)
    assert vehicle.certificate_not_after.isoformat() == "2027-03-01T12:00:00+00:00"


def test_binding_a_pre_registered_vehicle_records_the_certificate_expiry(
    registry, fleet_operator
) -> None:
    api_client_for(fleet_operator).post(URL, BODY, format="json")
    client = vehicle_api_client(
        VIN, cert_fingerprint="f" * 64, cert_not_after="2027-03-01T12:00:00+00:00"
    )
    assert client.post(URL, BODY, format="json").status_code == 200
    vehicle = Vehicle.objects.get(vin=VIN)
    assert vehicle.certificate_not_after.isoformat() == "2027-03-01T12:00:00+00:00"
