"""Control commands and the desired state drive the vehicle's update agent."""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace

import pytest

from ota.choices import UpdateState
from ota.models import OtaUpdate
from simulator.tests.conftest import close_other_threads_connections
from simulator.tests.in_process import VIN, make_agent
from simulator.vehicle import SimulatedVehicle, VehicleConfig
from vehicles.models import VciSnapshot


def _vehicle(agent=None) -> tuple[SimulatedVehicle, list[tuple[str, dict]]]:
    sent: list[tuple[str, dict]] = []
    vehicle = SimulatedVehicle(VehicleConfig(vin=VIN), ota=agent)
    vehicle.publish = lambda kind, document, retain=False: sent.append((kind, document))
    return vehicle, sent


def _command(name: str, **params) -> dict:
    return {"command_id": str(uuid.uuid4()), "vin": VIN, "command": name, "params": params}


def _answers(sent) -> list[tuple[str, dict]]:
    return [(d["status"], d.get("result") or {}) for k, d in sent if k == "control/response"]


def test_start_download_carries_the_update_through_and_reports_the_outcome(
    offered,
    keys,
    tmp_path,
) -> None:
    agent = make_agent(tmp_path, keys)
    update = offered(agent)
    vehicle, sent = _vehicle(agent)
    vehicle._control(_command("start_download"))
    assert _answers(sent) == [
        ("accepted", {}),
        ("completed", {"update_id": update.pk, "outcome": "succeeded"}),
    ]
    update.refresh_from_db()
    assert update.state == UpdateState.SUCCEEDED


def test_activate_reboots_into_a_waiting_update(offered, keys, tmp_path) -> None:
    agent = make_agent(tmp_path, keys, activation="command")
    update = offered(agent)
    vehicle, sent = _vehicle(agent)
    vehicle._control(_command("activate"))
    assert _answers(sent)[-1][0] == "failed"  # nothing installed yet
    agent.run_update()
    vehicle._control(_command("activate", update_id=update.pk))
    assert _answers(sent)[-1] == ("completed", {"update_id": update.pk, "outcome": "succeeded"})


def test_collect_vci_sends_the_report_over_https(offered, keys, tmp_path) -> None:
    agent = make_agent(tmp_path, keys)
    agent.register()
    vehicle, sent = _vehicle(agent)
    vehicle._control(_command("collect_vci"))
    status, result = _answers(sent)[-1]
    assert status == "completed"
    snapshot = VciSnapshot.objects.get(pk=result["snapshot_id"])
    assert (snapshot.trigger, snapshot.ecu_count) == ("remote_request", 100)


@pytest.mark.django_db(transaction=True)
def test_a_retained_offer_starts_the_update_and_a_cleared_one_does_not(
    offered,
    keys,
    tmp_path,
) -> None:
    agent = make_agent(tmp_path, keys)
    update = offered(agent)
    vehicle, _ = _vehicle(agent)

    def deliver(pending) -> None:
        document = {"vin": VIN, "updated_at": 0, "pending_update": pending}
        message = SimpleNamespace(
            topic=f"vehicle/{VIN}/desired-state", payload=json.dumps(document).encode()
        )
        vehicle._on_message(None, None, message)

    deliver(None)
    assert not agent.busy and agent.outcomes == []
    deliver({"update_id": update.pk})
    deadline = time.monotonic() + 30
    while not agent.outcomes and time.monotonic() < deadline:
        time.sleep(0.05)
    close_other_threads_connections()  # the agent's thread is done with the database
    assert [o.result for o in agent.outcomes] == ["succeeded"]
    assert OtaUpdate.objects.get(pk=update.pk).state == UpdateState.SUCCEEDED


@pytest.mark.parametrize("name", ["start_download", "activate", "cancel"])
def test_without_https_update_commands_fail_with_a_reason(name) -> None:
    vehicle, sent = _vehicle()
    vehicle._control(_command(name))
    (kind, answer) = sent[-1]
    assert answer["status"] == "failed"
    assert "no HTTPS endpoint" in answer["detail"]
