"""The vehicle's update agent against the real API in-process: outcomes, failures, resuming."""

from __future__ import annotations

import json

import pytest

from ecus.models import Ecu
from ota.choices import UpdateState
from simulator.https import HttpsError
from simulator.tests.in_process import VIN, make_agent
from vehicles.models import VciSnapshot

ECM_ECUS = {"ECU_001", "ECU_009", "ECU_017"}


def _running(ecu_ids) -> dict[str, str]:
    return dict(
        Ecu.objects.filter(vehicle__vin=VIN, ecu_id__in=ecu_ids).values_list("ecu_id", "sw_version")
    )


def test_update_is_installed_rebooted_and_proven_by_the_next_vci(offered, keys, tmp_path) -> None:
    agent = make_agent(tmp_path, keys, chunk_size=1024)
    update = offered(agent)
    outcome = agent.run_update()
    assert outcome.result == "succeeded"
    update.refresh_from_db()
    assert update.state == UpdateState.SUCCEEDED
    assert _running(ECM_ECUS) == dict.fromkeys(ECM_ECUS, "2.0.0")
    assert {agent.ecus[e].sw_version for e in ECM_ECUS} == {"2.0.0"}
    assert VciSnapshot.objects.filter(vehicle__vin=VIN, trigger="post_update").exists()
    assert agent.api.stats.requests > 1  # the package came in several Range requests
    # What runs, and the anti-rollback floor, survive a restart of the vehicle.
    state = json.loads((tmp_path / "vehicle" / "state.json").read_text())
    assert state["ecus"]["ECU_001"]["sw_version"] == "2.0.0"
    assert state["min_package_version"]["ZGW_FRONT"] > 0
    again = make_agent(tmp_path, keys)
    assert again.ecus["ECU_017"].sw_version == "2.0.0"
    assert (
        again.ecus["ECU_017"].handle(bytes.fromhex("22f194")) == bytes.fromhex("62f194") + b"2.0.0"
    )
    # Nothing more to do: the next check finds no update.
    assert again.run_update().result == "none"


@pytest.mark.parametrize(
    ("mode", "state", "error"),
    [
        ("verify", UpdateState.FAILED, "verification failed"),
        ("install", UpdateState.FAILED, "install failed"),
        ("boot", UpdateState.ROLLED_BACK, "boot failed"),
    ],
)
def test_failure_modes_end_as_the_server_expects(offered, keys, tmp_path, mode, state, error):
    agent = make_agent(tmp_path, keys, fail=mode)
    update = offered(agent)
    before = _running(ECM_ECUS)
    outcome = agent.run_update()
    update.refresh_from_db()
    assert update.state == state
    assert error in update.error
    assert outcome.result == ("rolled_back" if mode == "boot" else "failed")
    assert _running(ECM_ECUS) == before
    assert {agent.ecus[e].sw_version for e in ECM_ECUS} == set(before.values())


def test_a_cut_download_resumes_where_it_stopped(offered, keys, tmp_path) -> None:
    agent = make_agent(tmp_path, keys, chunk_size=1024, cut_download_at=1500)
    offered(agent)
    assert agent.run_update().result == "succeeded"
    assert agent.api.stats.resumes == 1


def test_a_package_older_than_the_last_installed_is_refused(offered, keys, tmp_path) -> None:
    agent = make_agent(tmp_path, keys)
    update = offered(agent)
    agent.min_package_version["ZGW_FRONT"] = 2**62
    assert agent.run_update().result == "failed"
    update.refresh_from_db()
    assert "rollback refused" in update.error


def test_activation_by_command_waits_at_ready(offered, keys, tmp_path) -> None:
    agent = make_agent(tmp_path, keys, activation="command")
    update = offered(agent)
    assert agent.run_update().result == "ready"
    update.refresh_from_db()
    assert update.state == UpdateState.AWAITING_REBOOT
    # The offer seen again (a reconnect) does not install the update a second time.
    requests = agent.api.stats.requests
    assert agent.run_update().result == "ready"
    assert agent.api.stats.requests == requests
    assert agent.activate().result == "succeeded"
    update.refresh_from_db()
    assert update.state == UpdateState.SUCCEEDED
    assert agent.activate() is None  # nothing left to activate


def test_a_download_that_no_longer_matches_fetches_the_current_package(
    offered, keys, tmp_path, monkeypatch
) -> None:
    agent = make_agent(tmp_path, keys)
    offered(agent)
    real = agent.api.download
    calls: list[str] = []

    def flaky(path, dest, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            raise HttpsError(0, "downloaded bytes do not hash to the plan's sha256")
        return real(path, dest, **kwargs)

    monkeypatch.setattr(agent.api, "download", flaky)
    assert agent.run_update().result == "succeeded"
    assert len(calls) == 2


def test_a_vehicle_without_an_offer_does_nothing(registry, keys, tmp_path) -> None:
    agent = make_agent(tmp_path, keys)
    agent.register()
    assert agent.run_update().result == "none"
    assert not agent.busy
