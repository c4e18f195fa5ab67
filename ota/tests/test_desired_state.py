"""The retained desired state and Vehicle.status follow each update from offer to outcome."""

from __future__ import annotations

from core.models import AuditEvent
from ecus.models import Ecu
from ota.campaigns import cancel_campaign
from ota.choices import UpdateState
from ota.engine import run_tick
from ota.models import OtaUpdate, UpdateReport
from ota.services import check_for_update, record_status_report
from ota.tests.conftest import launch_campaign, serve_packages
from vehicles.choices import VehicleStatus

NEW = {"ECU_001": "2.0.0", "ECU_017": "2.0.0"}


def _offer(fleet_operator, ecm_release, capture):
    with capture(execute=True):
        launch_campaign(fleet_operator, [ecm_release])
    return OtaUpdate.objects.get()


def _desired(published, vin):
    return [m for m in published.to(f"{vin}/desired-state")]


def test_an_offer_is_retained_for_the_vehicle_after_commit_and_marks_it_updating(
    vehicle, fleet_operator, ecm_release, fake_packages, published, settings,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    settings.OTA_PUBLIC_BASE_URL = "https://ota.example.com:8443"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        launch_campaign(fleet_operator, [ecm_release])
    # Nothing leaves before the transaction commits.
    assert _desired(published, vehicle.vin) == []
    for callback in callbacks:
        callback()
    update = OtaUpdate.objects.get(vehicle=vehicle)
    [message] = _desired(published, vehicle.vin)
    assert (message.qos, message.retain) == (1, True)
    assert message.topic == f"vehicle/{vehicle.vin}/desired-state"
    assert message.document["vin"] == vehicle.vin
    assert message.document["pending_update"] == {
        "update_id": update.pk,
        "campaign_id": update.campaign_id,
        "attempt": 1,
        "check_url": "https://ota.example.com:8443/api/v1/ota/check",
    }
    vehicle.refresh_from_db()
    assert vehicle.status == VehicleStatus.UPDATING


def test_success_clears_the_desired_state_and_the_vehicle_is_active_again(
    vehicle, fleet_operator, ecm_release, fake_packages, published,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    update = _offer(fleet_operator, ecm_release, django_capture_on_commit_callbacks)
    check_for_update(vehicle=vehicle)
    serve_packages(update)
    with django_capture_on_commit_callbacks(execute=True):
        record_status_report(
            vehicle=vehicle,
            report={"update_id": update.pk, "vmg_state": 6, "running_versions": NEW},
            source="http",
        )
    first, last = _desired(published, vehicle.vin)
    assert first.document["pending_update"]["update_id"] == update.pk
    assert last.document["pending_update"] is None
    assert last.retain
    vehicle.refresh_from_db()
    assert vehicle.status == VehicleStatus.ACTIVE


def test_progress_reports_leave_the_desired_state_alone(
    vehicle, fleet_operator, ecm_release, fake_packages, published,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    update = _offer(fleet_operator, ecm_release, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        record_status_report(
            vehicle=vehicle,
            report={"update_id": update.pk, "vmg_state": 1, "percentage": 30},
            source="mqtt",
        )
    assert len(_desired(published, vehicle.vin)) == 1
    vehicle.refresh_from_db()
    assert vehicle.status == VehicleStatus.UPDATING


def test_failure_clears_it_and_the_automatic_retry_offers_it_again(
    vehicle, fleet_operator, ecm_release, fake_packages, published,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    update = _offer(fleet_operator, ecm_release, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        record_status_report(
            vehicle=vehicle,
            report={"update_id": update.pk, "vmg_state": 5, "error": "flash error"},
            source="http",
        )
    vehicle.refresh_from_db()
    assert vehicle.status == VehicleStatus.ACTIVE
    update.refresh_from_db()
    assert update.state == UpdateState.FAILED
    OtaUpdate.objects.filter(pk=update.pk).update(next_action_at=update.finished_at)
    with django_capture_on_commit_callbacks(execute=True):
        run_tick()
    pendings = [m.document["pending_update"] for m in _desired(published, vehicle.vin)]
    assert [p and p["update_id"] for p in pendings] == [update.pk, None, update.pk]
    vehicle.refresh_from_db()
    assert vehicle.status == VehicleStatus.UPDATING


def test_cancelling_a_campaign_clears_the_offered_vehicles_only(
    vehicle, other_vehicle, fleet_operator, ecm_release, fake_packages, published,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        campaign = launch_campaign(fleet_operator, [ecm_release], wave_percentages=[50, 100])
    [offered] = OtaUpdate.objects.filter(state=UpdateState.OFFERED).select_related("vehicle")
    waiting = OtaUpdate.objects.get(state=UpdateState.QUEUED).vehicle
    with django_capture_on_commit_callbacks(execute=True):
        cancel_campaign(campaign, operator=fleet_operator)
    pendings = [m.document["pending_update"] for m in _desired(published, offered.vehicle.vin)]
    assert pendings == [pendings[0], None] and pendings[0]["update_id"] == offered.pk
    assert _desired(published, waiting.vin) == []
    offered.vehicle.refresh_from_db()
    waiting.refresh_from_db()
    assert offered.vehicle.status == VehicleStatus.ACTIVE
    assert waiting.status == VehicleStatus.REGISTERED


def test_a_decommissioned_vehicle_keeps_its_status(
    vehicle, fleet_operator, ecm_release, fake_packages, django_capture_on_commit_callbacks
) -> None:
    update = _offer(fleet_operator, ecm_release, django_capture_on_commit_callbacks)
    type(vehicle).objects.filter(pk=vehicle.pk).update(status=VehicleStatus.DECOMMISSIONED)
    record_status_report(
        vehicle=vehicle,
        report={"update_id": update.pk, "vmg_state": 5, "error": "flash error"},
        source="http",
    )
    vehicle.refresh_from_db()
    assert vehicle.status == VehicleStatus.DECOMMISSIONED


def test_a_second_report_of_the_same_outcome_is_not_recorded_twice(
    vehicle, fleet_operator, ecm_release, fake_packages, django_capture_on_commit_callbacks
) -> None:
    update = _offer(fleet_operator, ecm_release, django_capture_on_commit_callbacks)
    check_for_update(vehicle=vehicle)
    serve_packages(update)
    for report_id in ("done-1", "done-2"):
        record_status_report(
            vehicle=vehicle,
            report={
                "update_id": update.pk,
                "report_id": report_id,
                "vmg_state": 6,
                "running_versions": NEW,
            },
            source="http",
        )
    update.refresh_from_db()
    assert update.state == UpdateState.SUCCEEDED
    assert AuditEvent.objects.filter(action="ota.update.succeeded").count() == 1
    outcomes = list(UpdateReport.objects.filter(update=update).values_list("outcome", flat=True))
    assert outcomes == ["applied", "stale"]
    assert set(
        Ecu.objects.filter(vehicle=vehicle, ecu_id__in=NEW).values_list("sw_version", flat=True)
    ) == {"2.0.0"}
