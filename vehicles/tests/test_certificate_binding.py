"""A VIN bound to one client certificate answers only to that certificate, on every transport."""

from __future__ import annotations

import pytest

from conftest import vehicle_api_client
from vehicles.identity import certificate_speaks_for
from vehicles.services import register_vehicle

BOUND = "ab" * 32
VIN = "WVWZZZ1JZ3W386752"


@pytest.fixture
def bound_vehicle(registry):
    return register_vehicle(
        vin=VIN, model_name="Aurora", model_year=2026, certificate_fingerprint=BOUND
    )


def test_the_bound_certificate_is_the_vehicle(bound_vehicle):
    response = vehicle_api_client(VIN, cert_fingerprint=BOUND).get(f"/api/v1/vehicles/{VIN}")
    assert response.status_code == 200


@pytest.mark.parametrize("fingerprint", ["", "cd" * 32])
def test_another_or_no_certificate_fingerprint_is_not_the_vehicle(bound_vehicle, fingerprint):
    response = vehicle_api_client(VIN, cert_fingerprint=fingerprint).get(f"/api/v1/vehicles/{VIN}")
    assert response.status_code == 401
    assert "bound to this VIN" in response.json()["error"]["message"]


def test_a_missing_certificate_fingerprint_is_not_the_vehicle(bound_vehicle):
    client = vehicle_api_client(VIN)
    from core.auth import TLS_META_KEY

    del client.defaults[TLS_META_KEY]["cert_fingerprint"]
    assert client.get(f"/api/v1/vehicles/{VIN}").status_code == 401


def test_an_unbound_vin_accepts_its_first_certificate(vehicle):
    response = vehicle_api_client(vehicle.vin, cert_fingerprint="").get(
        f"/api/v1/vehicles/{vehicle.vin}"
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("vin", "fingerprint", "allowed"),
    [
        (VIN, BOUND, True),
        (VIN, "", False),
        (VIN, "cd" * 32, False),
        ("1HGCM82633A004352", "", True),
    ],
)
def test_the_rule_the_mqtt_front_is_given(bound_vehicle, vin, fingerprint, allowed):
    assert certificate_speaks_for(vin, fingerprint) is allowed
