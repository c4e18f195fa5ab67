from __future__ import annotations

import pytest

from diagnostics.models import ControlCommand
from diagnostics.services import record_control_response
from diagnostics.tests.factories import control_response

pytestmark = pytest.mark.django_db

CONTROL = "/api/v1/diagnostics/control"


def test_operator_sends_to_vehicles_and_sees_acknowledgements(
    vehicle, other_vehicle, operator_client
):
    response = operator_client.post(
        CONTROL, {"command": "collect_vci", "vins": [vehicle.vin, other_vehicle.vin]}, format="json"
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert {c["vin"] for c in body["commands"]} == {vehicle.vin, other_vehicle.vin}
    mine = next(c for c in body["commands"] if c["vin"] == vehicle.vin)
    record_control_response(
        vehicle=vehicle, response=control_response(vehicle.vin, mine["command_id"])
    )
    batch = operator_client.get(f"{CONTROL}/{body['batch_id']}").json()
    assert batch["counts"] == {"accepted": 1, "sent": 1}


def test_viewer_cannot_send_commands(vehicle, viewer_client):
    response = viewer_client.post(
        CONTROL, {"command": "cancel", "vins": [vehicle.vin]}, format="json"
    )
    assert response.status_code == 403
    assert not ControlCommand.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": "reboot_everything", "vins": ["WVWZZZ1JZ3W386752"]}, "command"),
        ({"command": "cancel"}, "vins"),
        ({"command": "cancel", "vins": ["5YJ3E1EA7KF317000"]}, "vins"),
        ({"command": "cancel", "vins": ["WVWZZZ1JZ3W386752"], "timeout_s": 0}, "timeout_s"),
        ({"command": "cancel", "campaign_id": 999}, "campaign_id"),
    ],
)
def test_bad_commands_name_the_field_and_store_nothing(vehicle, operator_client, body, field):
    response = operator_client.post(CONTROL, body, format="json")
    assert 400 <= response.status_code < 500
    assert field in response.json()["error"]["fields"], response.json()
    assert not ControlCommand.objects.exists()
