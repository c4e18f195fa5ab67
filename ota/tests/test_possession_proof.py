"""Proof of package possession: a vehicle whose download record has a hole (the serving process
died before recording it) proves it holds each package with an HMAC keyed by the attempt's nonce."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from django.db.models import F

from conftest import vehicle_api_client
from core.models import AuditEvent
from core.mqtt.schemas import schema_errors
from firmware.models import ZonePackage
from ota.choices import UpdateState
from ota.models import OtaUpdate, UpdateReport
from ota.tests.conftest import launch_campaign, make_release
from telematics.ingest import handle_message

STATUS = "/api/v1/ota/status"


def proof(nonce: str, data: bytes) -> str:
    return hmac.new(bytes.fromhex(nonce), data, hashlib.sha256).hexdigest()


@pytest.fixture
def car_with_hole(registry, fleet_operator, settings, tmp_path):
    """A vehicle that downloaded its whole package, of which the server recorded only half."""
    settings.SIGNING_KEY_DIR = tmp_path / "signing"
    settings.PACKAGE_DIR = tmp_path / "packages"
    from vehicles.services import register_vehicle

    vehicle = register_vehicle(vin="5YJ3E1EA7KF317004", model_name="Aurora", model_year=2026)
    car = vehicle_api_client(vehicle.vin)
    launch_campaign(fleet_operator, [make_release("ECM", "2.0.0", hardware=("2.0",))])
    plan = car.post("/api/v1/ota/check", {}, format="json").json()
    [package] = plan["packages"]
    response = car.get(f"/api/v1/ota/package/{package['package_id']}")
    data = b"".join(response.streaming_content)
    assert len(data) == package["size"]
    half = package["size"] // 2
    # The bytes past `half` were served by a process killed before it recorded them.
    OtaUpdate.objects.filter(pk=plan["update_id"]).update(
        served_bytes={package["package_id"]: [[0, half]]}
    )
    update = OtaUpdate.objects.get(pk=plan["update_id"])
    assert not update.packages_served()
    ready = car.post(STATUS, {"update_id": update.pk, "vmg_state": 4}, format="json")
    assert ready.json()["state"] == UpdateState.AWAITING_REBOOT
    return car, plan, data


def completed(car, plan, **fields):
    running = {item["ecu_id"]: item["to_version"] for item in plan["items"]}
    return car.post(
        STATUS,
        {"update_id": plan["update_id"], "vmg_state": 6, "running_versions": running, **fields},
        format="json",
    )


def test_the_check_answer_gives_one_nonce_per_attempt(car_with_hole) -> None:
    car, plan, _ = car_with_hole
    nonce = plan["possession_nonce"]
    assert re.fullmatch(r"[0-9a-f]{64}", nonce)
    assert car.post("/api/v1/ota/check", {}, format="json").json()["possession_nonce"] == nonce
    # A new offer resets the plan, as the campaign engine does: a new attempt, a new nonce.
    OtaUpdate.objects.filter(pk=plan["update_id"]).update(plan={}, attempts=F("attempts") + 1)
    again = car.post("/api/v1/ota/check", {}, format="json").json()
    assert re.fullmatch(r"[0-9a-f]{64}", again["possession_nonce"])
    assert again["possession_nonce"] != nonce


def test_a_hole_in_the_served_record_is_covered_by_a_correct_proof(car_with_hole) -> None:
    car, plan, data = car_with_hole
    [package] = plan["packages"]
    done = completed(
        car,
        plan,
        package_proofs={package["package_id"]: proof(plan["possession_nonce"], data)},
    )
    assert done.status_code == 200, done.json()
    assert done.json()["state"] == UpdateState.SUCCEEDED
    assert AuditEvent.objects.filter(action="ota.update.succeeded").count() == 1


def test_a_wrong_proof_is_refused_naming_the_package(car_with_hole) -> None:
    car, plan, data = car_with_hole
    [package] = plan["packages"]
    forged = proof(plan["possession_nonce"], data[:-1] + bytes([data[-1] ^ 1]))
    done = completed(car, plan, package_proofs={package["package_id"]: forged})
    assert done.status_code == 409
    assert f"package_proofs.{package['package_id']}" in done.json()["error"]["fields"]
    update = OtaUpdate.objects.get(pk=plan["update_id"])
    assert update.state == UpdateState.AWAITING_REBOOT
    assert UpdateReport.objects.filter(update=update, outcome="refused").count() == 1
    assert AuditEvent.objects.filter(action="ota.report.refused").count() == 1
    assert not AuditEvent.objects.filter(action="ota.update.succeeded").exists()


def test_a_proof_keyed_by_another_attempts_nonce_is_refused(car_with_hole) -> None:
    car, plan, data = car_with_hole
    [package] = plan["packages"]
    old_nonce = plan["possession_nonce"]
    OtaUpdate.objects.filter(pk=plan["update_id"]).update(
        plan={}, attempts=F("attempts") + 1, state=UpdateState.OFFERED, served_bytes={}
    )
    plan = car.post("/api/v1/ota/check", {}, format="json").json()
    assert plan["possession_nonce"] != old_nonce
    ready = car.post(STATUS, {"update_id": plan["update_id"], "vmg_state": 4}, format="json")
    assert ready.json()["state"] == UpdateState.AWAITING_REBOOT
    done = completed(car, plan, package_proofs={package["package_id"]: proof(old_nonce, data)})
    assert done.status_code == 409
    assert f"package_proofs.{package['package_id']}" in done.json()["error"]["fields"]
    assert OtaUpdate.objects.get(pk=plan["update_id"]).state == UpdateState.AWAITING_REBOOT


def test_a_hole_without_a_proof_is_refused(car_with_hole) -> None:
    car, plan, _ = car_with_hole
    done = completed(car, plan)
    assert done.status_code == 409
    assert "running_versions" in done.json()["error"]["fields"]
    assert OtaUpdate.objects.get(pk=plan["update_id"]).state == UpdateState.AWAITING_REBOOT
    assert AuditEvent.objects.filter(action="ota.report.refused").count() == 1


def test_a_proof_that_is_not_hex_is_a_clear_400(car_with_hole) -> None:
    car, plan, _ = car_with_hole
    [package] = plan["packages"]
    done = completed(car, plan, package_proofs={package["package_id"]: "not-hex"})
    assert done.status_code == 400
    assert f"package_proofs.{package['package_id']}" in done.json()["error"]["fields"]
    assert OtaUpdate.objects.get(pk=plan["update_id"]).state == UpdateState.AWAITING_REBOOT


def test_the_proof_is_computed_over_the_stored_package_file(car_with_hole) -> None:
    _, plan, data = car_with_hole
    [package] = plan["packages"]
    stored = ZonePackage.objects.get(pk=package["package_id"])
    with stored.file.storage.open(stored.file.name, "rb") as fh:
        assert fh.read() == data


def test_the_mqtt_status_schema_takes_package_proofs() -> None:
    report = {
        "vin": "5YJ3E1EA7KF317004",
        "report_id": "r1",
        "vmg_state": 6,
        "package_proofs": {"ab" * 32: "cd" * 32},
    }
    assert schema_errors("ota/status", report) == []
    assert schema_errors("ota/status", {**report, "package_proofs": {"ab" * 32: "xyz"}})


def test_a_completed_over_mqtt_is_judged_by_the_same_proofs(car_with_hole) -> None:
    _, plan, data = car_with_hole
    [package] = plan["packages"]
    update = OtaUpdate.objects.select_related("vehicle").get(pk=plan["update_id"])
    topic = f"vehicle/{update.vehicle.vin}/ota/status"
    running = {item["ecu_id"]: item["to_version"] for item in plan["items"]}
    report = {
        "vin": update.vehicle.vin,
        "update_id": update.pk,
        "vmg_state": 6,
        "running_versions": running,
    }
    forged = {package["package_id"]: proof(plan["possession_nonce"], data + b"x")}
    wrong = {**report, "report_id": "m1", "package_proofs": forged}
    assert handle_message(topic, json.dumps(wrong).encode()) != "accepted"
    assert OtaUpdate.objects.get(pk=update.pk).state == UpdateState.AWAITING_REBOOT
    right = {package["package_id"]: proof(plan["possession_nonce"], data)}
    good = {**report, "report_id": "m2", "package_proofs": right}
    assert handle_message(topic, json.dumps(good).encode()) == "accepted"
    assert OtaUpdate.objects.get(pk=update.pk).state == UpdateState.SUCCEEDED


def test_proofs_sent_before_the_reboot_settle_the_vci_that_proves_the_new_software(
    car_with_hole,
) -> None:
    car, plan, data = car_with_hole
    [package] = plan["packages"]
    # COMPLETED without running versions: the vehicle still has to reboot and prove them.
    ready = car.post(
        STATUS,
        {
            "update_id": plan["update_id"],
            "vmg_state": 6,
            "package_proofs": {package["package_id"]: proof(plan["possession_nonce"], data)},
        },
        format="json",
    )
    assert ready.status_code == 200, ready.json()
    assert ready.json()["state"] == UpdateState.AWAITING_REBOOT
    update = OtaUpdate.objects.get(pk=plan["update_id"])
    assert update.packages_served()
    vin = update.vehicle.vin
    ecus = [
        {"ecu_id": item["ecu_id"], "sw_version": item["to_version"], "hw_version": "2.0"}
        for item in plan["items"]
    ]
    settled = car.post(
        f"/api/v1/vehicles/{vin}/vci",
        {"vin": vin, "timestamp": 1767225600, "trigger": "power_on", "ecus": ecus},
        format="json",
    )
    assert settled.status_code == 201, settled.json()
    update.refresh_from_db()
    assert update.state == UpdateState.SUCCEEDED
