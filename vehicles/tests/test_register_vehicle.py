from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from core.api import ConflictError, DomainError
from ecus.models import Ecu
from vehicles.services import register_vehicle
from vehicles.validators import validate_vin


def test_registered_vehicle_gets_its_ecus_from_the_registry(registry) -> None:
    vehicle = register_vehicle(vin="WVWZZZ1JZ3W386752", model_name="Aurora", model_year=2026)
    assert vehicle.ecus.count() == 100
    assert vehicle.zonal_gateways.count() == 6
    ecu = Ecu.objects.select_related("zonal_gateway", "ecu_type").get(
        vehicle=vehicle, ecu_id="ECU_001"
    )
    assert ecu.zonal_gateway.gateway_id == "ZGW_FRONT"
    assert ecu.ecu_type.code == "ECM"
    assert ecu.sw_version_key  # computed although bulk_create skips save()


def test_registering_twice_conflicts(vehicle) -> None:
    with pytest.raises(ConflictError):
        register_vehicle(vin=vehicle.vin, model_name="Aurora", model_year=2026)


def test_registration_needs_a_registry(db) -> None:
    with pytest.raises(DomainError, match="import_registry"):
        register_vehicle(vin="WVWZZZ1JZ3W386752", model_name="Aurora", model_year=2026)


@pytest.mark.parametrize(
    "vin",
    [
        "WVWZZZ1JZ3W38675",
        "WVWZZZ1JZ3W3867522",
        "WVWZZZ1JZ3W38675I",
        "WVWZZZ1JZ3W38675O",
        "wvwzzz1jz3w386752",
    ],
)
def test_invalid_vins_are_refused(vin: str) -> None:
    with pytest.raises(ValidationError):
        validate_vin(vin)


def test_ecu_version_key_follows_version_on_save(vehicle) -> None:
    ecu = vehicle.ecus.get(ecu_id="ECU_010")
    ecu.sw_version = "3.0.0-rc.1"
    ecu.save(update_fields=["sw_version"])
    ecu.refresh_from_db()
    newer = vehicle.ecus.get(ecu_id="ECU_011")
    newer.sw_version = "3.0.0"
    newer.save()
    assert ecu.sw_version_key < vehicle.ecus.get(ecu_id="ECU_011").sw_version_key
