from __future__ import annotations

from conftest import api_client_for, vehicle_api_client
from core.models import AuditEvent
from ecus.models import Ecu, SoftwareChange
from ota.choices import UpdateState
from ota.models import OtaUpdate, UpdateReport
from ota.tests.conftest import serve_packages

URL = "/api/v1/ota/status"
NEW = {"ECU_001": "2.0.0", "ECU_017": "2.0.0"}
OLD = {"ECU_001": "1.1.1", "ECU_017": "1.1.3"}


def report(client, update, **fields):
    return client.post(URL, {"update_id": update.pk, **fields}, format="json")


def planned(vehicle_client, update) -> OtaUpdate:
    vehicle_client.post("/api/v1/ota/check", {}, format="json")
    update.refresh_from_db()
    return update


def downloaded(vehicle_client, update) -> OtaUpdate:
    update = planned(vehicle_client, update)
    serve_packages(update)
    return update


def test_progress_reports_walk_the_state_machine(vehicle_client, offered_update) -> None:
    update = planned(vehicle_client, offered_update)
    steps = [
        ({"vmg_state": 1, "percentage": 40}, UpdateState.DOWNLOADING),
        ({"vmg_state": 1, "percentage": 100}, UpdateState.DOWNLOADED),
        ({"vmg_state": 2}, UpdateState.VERIFYING),
        ({"state": "INSTALLING"}, UpdateState.INSTALLING),
        ({"vmg_state": 4}, UpdateState.AWAITING_REBOOT),
    ]
    for sequence, (fields, expected) in enumerate(steps, start=1):
        response = report(vehicle_client, update, sequence=sequence, **fields)
        assert response.status_code == 200, response.json()
        assert response.json()["state"] == expected


def test_completed_without_running_versions_is_not_success(vehicle_client, offered_update) -> None:
    update = planned(vehicle_client, offered_update)
    response = report(vehicle_client, update, vmg_state=6, sequence=1)
    assert response.json()["state"] == UpdateState.AWAITING_REBOOT


def test_success_needs_the_new_versions_running_after_reboot(
    vehicle, vehicle_client, offered_update
) -> None:
    update = downloaded(vehicle_client, offered_update)
    report(vehicle_client, update, vmg_state=4, sequence=1)
    response = report(vehicle_client, update, vmg_state=6, sequence=2, running_versions=NEW)
    assert response.json()["state"] == UpdateState.SUCCEEDED
    assert Ecu.objects.get(vehicle=vehicle, ecu_id="ECU_001").sw_version == "2.0.0"
    assert (
        SoftwareChange.objects.filter(vehicle=vehicle, source="ota", update_id=update.pk).count()
        == 2
    )
    event = AuditEvent.objects.get(action="ota.update.succeeded")
    assert event.before == OLD
    assert event.after == NEW
    assert event.vehicle_vin == vehicle.vin


def test_next_vci_after_reboot_proves_success(vehicle, vehicle_client, offered_update) -> None:
    update = downloaded(vehicle_client, offered_update)
    report(vehicle_client, update, vmg_state=4, sequence=1)
    ecus = [{"ecu_id": e, "sw_version": v, "hw_version": "2.0"} for e, v in NEW.items()]
    response = vehicle_client.post(
        f"/api/v1/vehicles/{vehicle.vin}/vci",
        {"vin": vehicle.vin, "timestamp": 1767225600, "trigger": "power_on", "ecus": ecus},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["settled_update_state"] == UpdateState.SUCCEEDED
    update.refresh_from_db()
    assert update.state == UpdateState.SUCCEEDED


def test_old_versions_after_reboot_mean_rollback(vehicle_client, offered_update) -> None:
    update = planned(vehicle_client, offered_update)
    report(vehicle_client, update, vmg_state=4, sequence=1)
    response = report(vehicle_client, update, vmg_state=6, sequence=2, running_versions=OLD)
    assert response.json()["state"] == UpdateState.ROLLED_BACK
    assert AuditEvent.objects.filter(action="ota.update.rolled_back").count() == 1


def test_error_with_rolled_back_flag_is_a_rollback(vehicle_client, offered_update) -> None:
    update = planned(vehicle_client, offered_update)
    report(vehicle_client, update, vmg_state=3, sequence=1)
    response = report(
        vehicle_client, update, vmg_state=5, sequence=2, rolled_back=True, error="boot failed 3x"
    )
    assert response.json()["state"] == UpdateState.ROLLED_BACK
    assert response.json()["error"] == "boot failed 3x"


def test_partial_update_fails_naming_the_ecu(vehicle_client, offered_update) -> None:
    update = planned(vehicle_client, offered_update)
    report(vehicle_client, update, vmg_state=4, sequence=1)
    running = {"ECU_001": "2.0.0", "ECU_017": "1.1.3"}
    response = report(vehicle_client, update, vmg_state=6, sequence=2, running_versions=running)
    assert response.json()["state"] == UpdateState.FAILED
    assert "ECU_017 runs 1.1.3" in response.json()["error"]


def test_duplicate_report_is_acknowledged_once(vehicle_client, offered_update) -> None:
    update = planned(vehicle_client, offered_update)
    for _ in range(3):
        response = report(vehicle_client, update, vmg_state=1, percentage=10, report_id="r-1")
        assert response.status_code == 200
    assert UpdateReport.objects.filter(update=update).count() == 1


def test_reordered_reports_never_move_the_record_back(vehicle_client, offered_update) -> None:
    update = planned(vehicle_client, offered_update)
    report(vehicle_client, update, vmg_state=3, sequence=5)
    late = report(vehicle_client, update, vmg_state=1, percentage=50, sequence=2)
    assert late.status_code == 200
    assert late.json()["state"] == UpdateState.INSTALLING
    assert UpdateReport.objects.get(update=update, sequence=2).outcome == "stale"


def test_late_report_without_sequence_is_kept_as_stale(vehicle_client, offered_update) -> None:
    update = planned(vehicle_client, offered_update)
    report(vehicle_client, update, vmg_state=3)
    response = report(vehicle_client, update, vmg_state=1)
    assert response.status_code == 200
    assert response.json()["state"] == UpdateState.INSTALLING


def test_an_earlier_phase_with_a_newer_sequence_is_answered_with_the_current_state(
    vehicle_client, offered_update
) -> None:
    # A vehicle that restarted repeats an earlier phase of the same attempt: not a 409 that
    # costs it the attempt, but the server's state, and it is still alive.
    update = planned(vehicle_client, offered_update)
    report(vehicle_client, update, vmg_state=3, sequence=1)
    update.refresh_from_db()
    deadline = update.deadline_at
    response = report(vehicle_client, update, vmg_state=1, percentage=0, sequence=2)
    assert response.status_code == 200
    assert response.json()["state"] == UpdateState.INSTALLING
    update.refresh_from_db()
    assert update.state == UpdateState.INSTALLING
    assert update.deadline_at >= deadline
    assert UpdateReport.objects.get(update=update, sequence=2).outcome == "behind"
    check = vehicle_client.post("/api/v1/ota/check", {}, format="json").json()
    assert (check["state"], check["next_step"], check["attempt"]) == ("installing", "install", 1)


def test_reports_after_success_are_refused(vehicle_client, offered_update) -> None:
    update = downloaded(vehicle_client, offered_update)
    report(vehicle_client, update, vmg_state=6, sequence=1, running_versions=NEW)
    response = report(vehicle_client, update, vmg_state=1, sequence=2)
    assert response.status_code == 409


def test_bad_report_names_the_field_and_changes_nothing(vehicle_client, offered_update) -> None:
    update = planned(vehicle_client, offered_update)
    cases = [
        ({"vmg_state": 9}, "vmg_state"),
        ({"state": "FLYING"}, "state"),
        ({}, "vmg_state"),
        ({"vmg_state": 1, "percentage": 101}, "percentage"),
        ({"vmg_state": 1, "sequence": "x"}, "sequence"),
        ({"vmg_state": 6, "running_versions": {"ECU_001": "banana"}}, "running_versions.ECU_001"),
        ({"vmg_state": 5, "rolled_back": "yes"}, "rolled_back"),
    ]
    for fields, field in cases:
        response = report(vehicle_client, update, **fields)
        assert response.status_code == 400, fields
        assert field in response.json()["error"]["fields"], fields
    assert UpdateReport.objects.filter(update=update).count() == 0
    update.refresh_from_db()
    assert update.state == UpdateState.OFFERED


def test_report_on_another_vehicles_update_is_not_found(offered_update, other_vehicle) -> None:
    response = report(vehicle_api_client(other_vehicle.vin), offered_update, vmg_state=1)
    assert response.status_code == 404
    offered_update.refresh_from_db()
    assert offered_update.state == UpdateState.OFFERED


def test_operators_cannot_post_status(fleet_operator, offered_update) -> None:
    response = report(api_client_for(fleet_operator), offered_update, vmg_state=1)
    assert response.status_code == 403


def test_mqtt_and_http_share_the_service(vehicle, vehicle_client, offered_update) -> None:
    from ota.services import record_status_report

    update = planned(vehicle_client, offered_update)
    record_status_report(
        vehicle=vehicle, report={"update_id": update.pk, "vmg_state": 2}, source="mqtt"
    )
    update.refresh_from_db()
    assert update.state == UpdateState.VERIFYING
    assert UpdateReport.objects.get(update=update).source == "mqtt"
