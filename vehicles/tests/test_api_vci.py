from __future__ import annotations

import pytest

from core.models import AuditEvent
from ecus.models import Ecu, SoftwareChange
from vehicles.models import VciSnapshot


def vci(vin: str, **overrides) -> dict:
    return {
        "vin": vin,
        "device_id": "VMG-7",
        "timestamp": 1767225600,
        "trigger": "power_on",
        "ecus": [
            {
                "ecu_id": "ECU_001",
                "sw_version": "1.1.2",
                "hw_version": "2.0",
                "part_number": "PN-1",
                "supplier": "Bosch",
                "serial_number": "SN-1",
            },
            {"ecu_id": "ECU_002", "sw_version": "1.2.2", "hw_version": "2.0"},
        ],
        **overrides,
    }


def url(vin: str) -> str:
    return f"/api/v1/vehicles/{vin}/vci"


def test_vci_updates_versions_and_keeps_a_snapshot(vehicle, vehicle_client) -> None:
    response = vehicle_client.post(url(vehicle.vin), vci(vehicle.vin), format="json")
    assert response.status_code == 201
    assert response.json()["changed_ecus"] == ["ECU_001"]
    ecu = Ecu.objects.get(vehicle=vehicle, ecu_id="ECU_001")
    assert (ecu.sw_version, ecu.supplier, ecu.serial_number) == ("1.1.2", "Bosch", "SN-1")
    assert VciSnapshot.objects.filter(vehicle=vehicle).count() == 1
    change = SoftwareChange.objects.get(vehicle=vehicle)
    assert (change.from_version, change.to_version, change.source) == ("1.1.1", "1.1.2", "vci")
    assert AuditEvent.objects.get(action="vehicle.vci_changed").after == {"ECU_001": "1.1.2"}


def test_vci_answers_with_outdated_ecus(vehicle, vehicle_client, registry) -> None:
    from ota.tests.conftest import make_release

    make_release("TCM", "3.0.0", hardware=("2.0",))
    body = vehicle_client.post(url(vehicle.vin), vci(vehicle.vin), format="json").json()
    assert {i["ecu_id"] for i in body["outdated"]} == {"ECU_002", "ECU_010"}


def test_iso_timestamps_are_accepted(vehicle, vehicle_client) -> None:
    body = vci(vehicle.vin, timestamp="2026-01-01T00:00:00Z")
    assert vehicle_client.post(url(vehicle.vin), body, format="json").status_code == 201


def test_snapshots_are_a_history(vehicle, vehicle_client, viewer_client) -> None:
    vehicle_client.post(url(vehicle.vin), vci(vehicle.vin), format="json")
    vehicle_client.post(
        url(vehicle.vin), vci(vehicle.vin, trigger="external_request"), format="json"
    )
    body = viewer_client.get(f"/api/v1/vehicles/{vehicle.vin}/vci-snapshots").json()
    assert [s["trigger"] for s in body["results"]] == ["external_request", "power_on"]


def bad_ecu(index_field: str, value) -> dict:
    index, field = index_field.split(".")
    payload = vci("WVWZZZ1JZ3W386752")
    payload["ecus"][int(index)][field] = value
    return payload


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (bad_ecu("1.sw_version", "one.two"), "ecus[1].sw_version"),
        (bad_ecu("0.hw_version", ""), "ecus[0].hw_version"),
        (bad_ecu("1.ecu_id", "ECU_999"), "ecus[1].ecu_id"),
        (bad_ecu("1.ecu_id", "ECU_001"), "ecus[1].ecu_id"),
        (vci("WVWZZZ1JZ3W386752", timestamp="yesterday"), "timestamp"),
        (vci("WVWZZZ1JZ3W386752", timestamp=None), "timestamp"),
        (vci("WVWZZZ1JZ3W386752", ecus=[]), "ecus"),
        (vci("1HGCM82633A004352"), "vin"),
    ],
)
def test_bad_vci_names_the_field_and_changes_nothing(
    vehicle, vehicle_client, payload, field
) -> None:
    response = vehicle_client.post(url(vehicle.vin), payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not VciSnapshot.objects.exists()
    assert Ecu.objects.get(vehicle=vehicle, ecu_id="ECU_001").sw_version == "1.1.1"


def test_vci_for_another_vin_is_forbidden(vehicle_client, other_vehicle) -> None:
    response = vehicle_client.post(url(other_vehicle.vin), vci(other_vehicle.vin), format="json")
    assert response.status_code == 403


def test_operators_cannot_submit_a_vci(operator_client, vehicle) -> None:
    assert (
        operator_client.post(url(vehicle.vin), vci(vehicle.vin), format="json").status_code == 403
    )
