"""A rolled-back update ends as one: no stale step, no abandoned target on its ECUs."""

from __future__ import annotations

from core.models import AuditEvent
from ecus.models import Ecu
from ota.choices import UpdateState
from ota.tests.test_update_truth import NEW, STATUS, planned


def _targets(vehicle) -> dict[str, str]:
    return dict(
        Ecu.objects.filter(vehicle=vehicle, ecu_id__in=NEW).values_list(
            "ecu_id", "target_sw_version"
        )
    )


def test_a_rollback_clears_the_step_and_the_ecus_targets(
    vehicle, vehicle_client, offered_update
) -> None:
    update = planned(vehicle_client, offered_update)
    assert _targets(vehicle) == NEW
    ready = vehicle_client.post(
        STATUS,
        {"update_id": update.pk, "vmg_state": 4, "current_step": "waiting for reboot"},
        format="json",
    )
    assert ready.status_code == 200, ready.content
    response = vehicle_client.post(
        STATUS,
        {"update_id": update.pk, "vmg_state": 5, "rolled_back": True, "error": "boot failed"},
        format="json",
    )
    assert response.status_code == 200, response.content
    update.refresh_from_db()
    assert update.state == UpdateState.ROLLED_BACK
    assert update.current_step == ""
    assert _targets(vehicle) == {ecu_id: "" for ecu_id in NEW}
    outcome = AuditEvent.objects.get(action="ota.update.rolled_back")
    assert outcome.object_id == str(update.pk)
