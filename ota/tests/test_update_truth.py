"""An update's state tells the truth: success needs served packages and the vehicle's proof,
restarts on either side converge on the same attempt, downloads count as signs of life."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from conftest import vehicle_api_client
from core.models import AuditEvent
from ecus.models import Ecu
from ota.choices import UpdateState
from ota.engine import expire_silent_updates
from ota.models import OtaUpdate, UpdateReport
from ota.tests.conftest import launch_campaign, make_release, serve_packages

STATUS = "/api/v1/ota/status"
NEW = {"ECU_001": "2.0.0", "ECU_017": "2.0.0"}
OLD = {"ECU_001": "1.1.1", "ECU_017": "1.1.3"}


def planned(client, update) -> OtaUpdate:
    client.post("/api/v1/ota/check", {}, format="json")
    update.refresh_from_db()
    return update


def registry_versions(vehicle) -> dict[str, str]:
    return dict(
        Ecu.objects.filter(vehicle=vehicle, ecu_id__in=NEW).values_list("ecu_id", "sw_version")
    )


def vci(client, vehicle, versions: dict[str, str]):
    ecus = [{"ecu_id": e, "sw_version": v, "hw_version": "2.0"} for e, v in versions.items()]
    return client.post(
        f"/api/v1/vehicles/{vehicle.vin}/vci",
        {"vin": vehicle.vin, "timestamp": 1767225600, "trigger": "power_on", "ecus": ecus},
        format="json",
    )


def test_completed_from_a_vehicle_that_downloaded_nothing_is_refused(
    vehicle, vehicle_client, offered_update
) -> None:
    update = planned(vehicle_client, offered_update)
    response = vehicle_client.post(
        STATUS,
        {"update_id": update.pk, "vmg_state": 6, "sequence": 1, "running_versions": NEW},
        format="json",
    )
    assert response.status_code == 409
    assert "running_versions" in response.json()["error"]["fields"]
    update.refresh_from_db()
    assert update.state == UpdateState.OFFERED
    assert registry_versions(vehicle) == OLD
    assert UpdateReport.objects.get(update=update).outcome == "refused"
    assert AuditEvent.objects.filter(action="ota.report.refused").count() == 1
    assert not AuditEvent.objects.filter(action="ota.update.succeeded").exists()


def test_a_vci_with_the_new_versions_does_not_settle_an_update_never_downloaded(
    vehicle, vehicle_client, offered_update
) -> None:
    update = planned(vehicle_client, offered_update)
    vehicle_client.post(STATUS, {"update_id": update.pk, "vmg_state": 4}, format="json")
    response = vci(vehicle_client, vehicle, NEW)
    assert response.status_code == 201
    update.refresh_from_db()
    assert update.state == UpdateState.AWAITING_REBOOT
    assert AuditEvent.objects.filter(action="ota.update.unproven").count() == 1


def test_versions_nobody_offered_are_refused_and_never_reach_the_registry(
    vehicle, vehicle_client, offered_update
) -> None:
    update = planned(vehicle_client, offered_update)
    serve_packages(update)
    response = vehicle_client.post(
        STATUS,
        {
            "update_id": update.pk,
            "vmg_state": 6,
            "running_versions": {"ECU_001": "9.9.9", "ECU_017": "2.0.0"},
        },
        format="json",
    )
    assert response.status_code == 409
    assert "running_versions.ECU_001" in response.json()["error"]["fields"]
    update.refresh_from_db()
    assert update.is_active()
    assert registry_versions(vehicle) == OLD


def test_a_vci_that_contradicts_a_success_reopens_it_as_rolled_back(
    vehicle, vehicle_client, offered_update
) -> None:
    update = planned(vehicle_client, offered_update)
    serve_packages(update)
    done = vehicle_client.post(
        STATUS, {"update_id": update.pk, "vmg_state": 6, "running_versions": NEW}, format="json"
    )
    assert done.json()["state"] == UpdateState.SUCCEEDED
    assert vci(vehicle_client, vehicle, OLD).status_code == 201
    update.refresh_from_db()
    assert update.state == UpdateState.ROLLED_BACK
    assert "contradicts" in update.error
    event = AuditEvent.objects.get(action="ota.update.reopened")
    assert event.before["state"] == UpdateState.SUCCEEDED
    assert event.after["versions"] == OLD
    # A VCI that agrees with a success leaves it alone.
    assert vci(vehicle_client, vehicle, OLD).status_code == 201
    assert AuditEvent.objects.filter(action="ota.update.reopened").count() == 1


def test_a_download_in_progress_keeps_the_update_alive(
    vehicle, vehicle_client, offered_update
) -> None:
    from ota.downloads import record_package_served

    update = planned(vehicle_client, offered_update)
    [package] = update.plan["packages"]
    # The deadline passed with no status report, but bytes are still flowing to the vehicle.
    OtaUpdate.objects.filter(pk=update.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    record_package_served(
        vehicle_id=vehicle.pk, package_id=package["package_id"], first=0, count=100
    )
    soon = timezone.now() + timedelta(minutes=1)
    assert expire_silent_updates(now=soon) == 0
    update.refresh_from_db()
    assert update.state == UpdateState.OFFERED
    assert update.served_bytes == {package["package_id"]: [[0, 100]]}
    # A vehicle that stops downloading and reporting still times out.
    timeout = update.campaign.timeout_seconds()
    assert expire_silent_updates(now=soon + timedelta(seconds=timeout)) == 1


def test_resumed_ranges_add_up_and_a_gap_does_not(vehicle, vehicle_client, offered_update) -> None:
    from ota.downloads import record_package_served

    update = planned(vehicle_client, offered_update)
    [package] = update.plan["packages"]
    served = dict(vehicle_id=vehicle.pk, package_id=package["package_id"])
    record_package_served(**served, first=0, count=600)
    record_package_served(**served, first=1500, count=500)  # a gap: not contiguous
    update.refresh_from_db()
    assert update.served_bytes[package["package_id"]] == [[0, 600], [1500, 2000]]
    assert not update.packages_served()
    record_package_served(**served, first=600, count=1400)  # resumed where it stopped
    update.refresh_from_db()
    assert update.packages_served()
    assert AuditEvent.objects.filter(action="ota.package.served").count() == 1


def test_ranges_recorded_out_of_order_add_up(vehicle, vehicle_client, offered_update) -> None:
    # A cut response is closed, and its bytes recorded, after the resumed request has begun.
    from ota.downloads import record_package_served

    update = planned(vehicle_client, offered_update)
    [package] = update.plan["packages"]
    size = package["size"]
    served = dict(vehicle_id=vehicle.pk, package_id=package["package_id"])
    record_package_served(**served, first=size // 2, count=size - size // 2)
    update.refresh_from_db()
    assert not update.packages_served()
    record_package_served(**served, first=0, count=size // 2)
    update.refresh_from_db()
    assert update.packages_served()
    assert update.served_bytes[package["package_id"]] == [[0, size]]


def test_bytes_served_by_the_download_view_are_recorded_against_the_update(
    registry, fleet_operator, settings, tmp_path
) -> None:
    settings.SIGNING_KEY_DIR = tmp_path / "signing"
    settings.PACKAGE_DIR = tmp_path / "packages"
    from vehicles.services import register_vehicle

    vehicle = register_vehicle(vin="5YJ3E1EA7KF317003", model_name="Aurora", model_year=2026)
    car = vehicle_api_client(vehicle.vin)
    launch_campaign(fleet_operator, [make_release("ECM", "2.0.0", hardware=("2.0",))])
    plan = car.post("/api/v1/ota/check", {}, format="json").json()
    [package] = plan["packages"]
    url = f"/api/v1/ota/package/{package['package_id']}"
    half = package["size"] // 2
    first = car.get(url, HTTP_RANGE=f"bytes=0-{half - 1}")
    assert first.status_code == 206
    assert len(b"".join(first.streaming_content)) == half
    update = OtaUpdate.objects.get(pk=plan["update_id"])
    assert update.served_bytes == {package["package_id"]: [[0, half]]}
    assert update.last_download_at is not None
    rest = car.get(url, HTTP_RANGE=f"bytes={half}-")
    b"".join(rest.streaming_content)
    update.refresh_from_db()
    assert update.packages_served()
    car.post(STATUS, {"update_id": update.pk, "vmg_state": 4}, format="json")
    running = {item["ecu_id"]: item["to_version"] for item in plan["items"]}
    done = car.post(
        STATUS, {"update_id": update.pk, "vmg_state": 6, "running_versions": running}, format="json"
    )
    assert done.status_code == 200
    assert done.json()["state"] == UpdateState.SUCCEEDED


def test_a_restarted_vehicle_learns_where_the_server_stands(
    vehicle, vehicle_client, offered_update
) -> None:
    update = planned(vehicle_client, offered_update)
    serve_packages(update)
    for sequence, state in enumerate((1, 2), start=1):
        vehicle_client.post(
            STATUS,
            {"update_id": update.pk, "vmg_state": state, "sequence": sequence, "percentage": 100},
            format="json",
        )
    check = vehicle_client.post("/api/v1/ota/check", {}, format="json").json()
    assert (check["state"], check["next_step"]) == (UpdateState.VERIFYING, "verify")
    # The vehicle restarted and starts over with DOWNLOADING 0 %: answered, not refused.
    again = vehicle_client.post(
        STATUS,
        {"update_id": update.pk, "vmg_state": 1, "percentage": 0, "sequence": 10},
        format="json",
    )
    assert again.status_code == 200
    assert again.json()["state"] == UpdateState.VERIFYING
    # It carries on from there to success, in the same attempt.
    for sequence, state in ((11, 2), (12, 3), (13, 4)):
        step = vehicle_client.post(
            STATUS,
            {"update_id": update.pk, "vmg_state": state, "sequence": sequence},
            format="json",
        )
        assert step.status_code == 200
    done = vehicle_client.post(
        STATUS,
        {"update_id": update.pk, "vmg_state": 6, "sequence": 14, "running_versions": NEW},
        format="json",
    )
    assert done.json()["state"] == UpdateState.SUCCEEDED
    assert done.json()["attempts"] == 1
