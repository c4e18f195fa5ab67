from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.api import DomainError, NotFoundError
from core.models import AuditEvent
from diagnostics.models import ControlCommand
from diagnostics.services import (
    expire_overdue,
    record_control_response,
    send_control_command,
    vehicles_for_control,
)
from diagnostics.tests.factories import control_response

pytestmark = pytest.mark.django_db


def test_command_to_several_vehicles_is_published_to_each_after_commit(
    vehicle, other_vehicle, fleet_operator, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        commands = send_control_command(
            vehicles=[vehicle, other_vehicle],
            command="collect_readiness",
            issued_by=fleet_operator,
            timeout_s=30,
        )
    assert {m.topic for m in published.messages} == {
        f"vehicle/{vehicle.vin}/control",
        f"vehicle/{other_vehicle.vin}/control",
    }
    sent_ids = {m.document["command_id"] for m in published.messages}
    assert sent_ids == {str(c.command_id) for c in commands}
    assert len({c.batch_id for c in commands}) == 1
    assert AuditEvent.objects.get(action="control.sent").actor == fleet_operator


def test_acknowledgement_then_completion_is_recorded(vehicle):
    (command,) = send_control_command(vehicles=[vehicle], command="collect_vci")
    record_control_response(
        vehicle=vehicle, response=control_response(vehicle.vin, command.command_id)
    )
    command.refresh_from_db()
    assert command.status == "accepted" and command.acknowledged_at is not None
    record_control_response(
        vehicle=vehicle,
        response=control_response(
            vehicle.vin, command.command_id, "completed", result={"ecus": 100}
        ),
    )
    command.refresh_from_db()
    assert command.status == "completed"
    assert command.result == {"ecus": 100}


def test_a_late_acknowledgement_does_not_reopen_a_completed_command(vehicle):
    (command,) = send_control_command(vehicles=[vehicle], command="activate")
    record_control_response(
        vehicle=vehicle, response=control_response(vehicle.vin, command.command_id, "completed")
    )
    record_control_response(
        vehicle=vehicle, response=control_response(vehicle.vin, command.command_id)
    )
    command.refresh_from_db()
    assert command.status == "completed"


def test_silence_past_the_deadline_is_a_timeout_and_later_answers_are_ignored(vehicle):
    (command,) = send_control_command(vehicles=[vehicle], command="cancel", timeout_s=5)
    assert expire_overdue(now=timezone.now())["commands"] == 0
    assert expire_overdue(now=timezone.now() + timedelta(seconds=6))["commands"] == 1
    command.refresh_from_db()
    assert command.status == "timed_out"
    record_control_response(
        vehicle=vehicle, response=control_response(vehicle.vin, command.command_id)
    )
    command.refresh_from_db()
    assert command.status == "timed_out"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"command": "self_destruct"}, "command"),
        ({"command": "cancel", "timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_commands_are_refused_and_store_nothing(vehicle, kwargs, field):
    with pytest.raises(DomainError) as caught:
        send_control_command(vehicles=[vehicle], **kwargs)
    assert caught.value.field == field
    assert not ControlCommand.objects.exists()


def test_vehicle_list_must_name_known_vehicles(vehicle):
    with pytest.raises(NotFoundError) as caught:
        vehicles_for_control(vins=[vehicle.vin, "5YJ3E1EA7KF317000"])
    assert caught.value.field == "vins"
    assert vehicles_for_control(vins=[vehicle.vin, vehicle.vin]) == [vehicle]


def test_unknown_campaign_is_refused(vehicle):
    with pytest.raises(NotFoundError) as caught:
        vehicles_for_control(campaign_id=424242)
    assert caught.value.field == "campaign_id"
