from __future__ import annotations

import pytest
from django.urls import reverse

from conftest import api_client_for, vehicle_api_client
from pqc.tests.conftest import VIN_A, VIN_B

pytestmark = pytest.mark.django_db


@pytest.fixture
def vehicles():
    from vehicles.models import Vehicle

    return [
        Vehicle.objects.create(vin=vin, model_name="Aurora", model_year=2026, tls_group="MLKEM768")
        for vin in (VIN_A, VIN_B)
    ]


def test_whoami_echoes_the_tls_identity() -> None:
    client = vehicle_api_client(VIN_A, group="SecP256r1MLKEM768", cert_serial="abc")
    response = client.get(reverse("pqc-api:tls-whoami"))

    assert response.status_code == 200
    body = response.json()
    assert body["vin"] == VIN_A
    assert body["group"] == "SecP256r1MLKEM768"
    assert body["cert_serial"] == "abc"
    assert body["registered"] is False


def test_whoami_ignores_identity_headers_sent_by_the_client() -> None:
    response = api_client_for().get(
        reverse("pqc-api:tls-whoami"), HTTP_OTA_TLS='{"vin": "WVWZZZ1JZXW000001"}'
    )
    assert response.status_code in {401, 403}


def test_operator_has_no_tls_identity(fleet_operator) -> None:
    response = api_client_for(fleet_operator).get(reverse("pqc-api:tls-whoami"))
    assert response.status_code == 403


def test_vehicle_reads_its_own_session(vehicles) -> None:
    url = reverse("vehicles-api:tls-session", kwargs={"vin": VIN_A})
    response = vehicle_api_client(VIN_A).get(url)
    assert response.status_code == 200
    assert response.json()["tls_group"] == "MLKEM768"


def test_vehicle_cannot_read_another_vehicles_session(vehicles) -> None:
    url = reverse("vehicles-api:tls-session", kwargs={"vin": VIN_B})
    response = vehicle_api_client(VIN_A).get(url)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_unregistered_vehicle_gets_404_naming_the_vin() -> None:
    url = reverse("vehicles-api:tls-session", kwargs={"vin": VIN_A})
    response = vehicle_api_client(VIN_A).get(url)
    assert response.status_code == 404
    assert "vin" in response.json()["error"]["fields"]
