from __future__ import annotations

from datetime import time, timedelta

import pytest
from django.utils import timezone

from core.models import AuditEvent
from ota.campaigns import (
    cancel_campaign,
    create_campaign,
    pause_campaign,
    resume_campaign,
    retry_failed,
    start_campaign,
    wave_sizes,
)
from ota.choices import CampaignStatus, UpdateState
from ota.engine import run_tick
from ota.models import Campaign, OtaUpdate
from ota.services import record_status_report
from ota.tests.conftest import launch_campaign, serve_packages
from vehicles.models import Vehicle
from vehicles.services import register_vehicle

NEW = {"ECU_001": "2.0.0", "ECU_017": "2.0.0"}


@pytest.fixture
def fleet(registry) -> list[Vehicle]:
    return [
        register_vehicle(vin=f"1HGCM8263{n:08d}", model_name="Aurora", model_year=2026)
        for n in range(10)
    ]


def succeed(update: OtaUpdate) -> None:
    from ota.services import check_for_update

    check_for_update(vehicle=update.vehicle)
    serve_packages(update)
    record_status_report(
        vehicle=update.vehicle,
        report={"update_id": update.pk, "vmg_state": 6, "running_versions": NEW},
        source="http",
    )


def fail(update: OtaUpdate) -> None:
    record_status_report(
        vehicle=update.vehicle,
        report={"update_id": update.pk, "vmg_state": 5, "error": "flash error"},
        source="http",
    )


def offered(campaign: Campaign) -> list[OtaUpdate]:
    return list(
        OtaUpdate.objects.filter(campaign=campaign, state=UpdateState.OFFERED).select_related(
            "vehicle"
        )
    )


def test_wave_sizes_are_cumulative_and_never_leave_the_first_wave_empty() -> None:
    assert wave_sizes(10, [1, 10, 50, 100]) == [1, 0, 4, 5]
    assert wave_sizes(1000, [1, 10, 50, 100]) == [10, 90, 400, 500]
    assert wave_sizes(0, [50, 100]) == [0, 0]


def test_fan_out_creates_a_record_per_target_and_offers_only_the_first_wave(
    fleet, fleet_operator, ecm_release, fake_packages
) -> None:
    campaign = launch_campaign(fleet_operator, [ecm_release], wave_percentages=[10, 100])
    assert campaign.status == CampaignStatus.RUNNING
    assert OtaUpdate.objects.filter(campaign=campaign).count() == 10
    run_tick()
    assert len(offered(campaign)) == 1
    assert OtaUpdate.objects.filter(campaign=campaign, state=UpdateState.QUEUED).count() == 9


def test_successful_wave_advances_and_the_last_one_completes(
    fleet, fleet_operator, ecm_release, fake_packages
) -> None:
    campaign = launch_campaign(fleet_operator, [ecm_release], wave_percentages=[10, 100])
    run_tick()
    [first] = offered(campaign)
    succeed(first)
    summary = run_tick()
    assert summary.advanced == [campaign.pk]
    run_tick()
    for update in offered(campaign):
        succeed(update)
    run_tick()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    assert AuditEvent.objects.filter(action="campaign.completed").count() == 1


def test_failure_wave_pauses_the_campaign(
    fleet, fleet_operator, ecm_release, fake_packages
) -> None:
    campaign = launch_campaign(
        fleet_operator,
        [ecm_release],
        wave_percentages=[50, 100],
        max_attempts=1,
        failure_threshold=0.2,
    )
    run_tick()
    first_wave = offered(campaign)
    assert len(first_wave) == 5
    for update in first_wave[:2]:
        fail(update)
    run_tick()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert campaign.auto_paused
    assert "2 of 5" in campaign.pause_reason
    # Paused: the second wave is not offered however often the worker runs.
    run_tick()
    assert (
        OtaUpdate.objects.filter(campaign=campaign, wave__index=1)
        .exclude(state=UpdateState.QUEUED)
        .count()
        == 0
    )
    assert AuditEvent.objects.filter(action="campaign.auto_paused").count() == 1


def test_resume_after_an_automatic_pause_accepts_the_wave(
    fleet, fleet_operator, ecm_release, fake_packages
) -> None:
    campaign = launch_campaign(
        fleet_operator, [ecm_release], wave_percentages=[50, 100], max_attempts=1
    )
    run_tick()
    updates = offered(campaign)
    fail(updates[0])
    run_tick()
    resume_campaign(campaign, operator=fleet_operator)
    for update in updates[1:]:
        succeed(update)
    run_tick()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert campaign.current_wave == 1


def test_silent_vehicle_times_out_and_is_retried_with_backoff(
    fleet, fleet_operator, ecm_release, fake_packages
) -> None:
    campaign = launch_campaign(
        fleet_operator,
        [ecm_release],
        target_vins=[fleet[0].vin],
        vehicle_timeout_seconds=600,
        retry_backoff_seconds=60,
        max_attempts=2,
    )
    now = timezone.now()
    run_tick(now=now)
    update = OtaUpdate.objects.get(campaign=campaign)
    assert update.state == UpdateState.OFFERED
    later = now + timedelta(seconds=601)
    assert run_tick(now=later).expired == 1
    update.refresh_from_db()
    assert update.state == UpdateState.FAILED
    assert "timeout" in update.error
    assert update.next_action_at == update.finished_at + timedelta(seconds=60)
    run_tick(now=later + timedelta(seconds=30))
    update.refresh_from_db()
    assert update.state == UpdateState.FAILED  # backoff not over yet
    run_tick(now=later + timedelta(seconds=61))
    update.refresh_from_db()
    assert update.state == UpdateState.OFFERED
    assert update.attempts == 2


def test_last_timeout_counts_against_the_wave(
    fleet, fleet_operator, ecm_release, fake_packages
) -> None:
    campaign = launch_campaign(
        fleet_operator,
        [ecm_release],
        target_vins=[fleet[0].vin],
        vehicle_timeout_seconds=600,
        max_attempts=1,
    )
    now = timezone.now()
    run_tick(now=now)
    run_tick(now=now + timedelta(seconds=601))
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED


def test_vehicle_registered_while_running_joins_the_campaign(
    fleet, fleet_operator, ecm_release, fake_packages
) -> None:
    campaign = launch_campaign(fleet_operator, [ecm_release])
    latecomer = register_vehicle(vin="5YJ3E1EA7KF317001", model_name="Aurora", model_year=2026)
    summary = run_tick()
    assert summary.joined == 1
    assert OtaUpdate.objects.get(campaign=campaign, vehicle=latecomer).state == UpdateState.OFFERED


def test_targeting_by_model_year_and_version_range(fleet, fleet_operator, ecm_release) -> None:
    Vehicle.objects.filter(pk=fleet[0].pk).update(model_year=2024)
    campaign = launch_campaign(fleet_operator, [ecm_release], target_model_years=[2024])
    assert list(OtaUpdate.objects.filter(campaign=campaign).values_list("vehicle", flat=True)) == [
        fleet[0].pk
    ]
    # ECU_001 runs 1.1.1 and ECU_017 1.1.3: a range above both selects nobody.
    nobody = launch_campaign(fleet_operator, [ecm_release], min_current_version="1.2.0")
    assert OtaUpdate.objects.filter(campaign=nobody).count() == 0


def test_offers_wait_for_the_maintenance_window(fleet, fleet_operator, ecm_release) -> None:
    now = timezone.now().replace(hour=12, minute=0)
    campaign = create_campaign(
        operator=fleet_operator,
        name="night",
        firmware_ids=[ecm_release.pk],
        wave_percentages=[100],
        maintenance_window_start=time(22, 0),
        maintenance_window_end=time(4, 0),
    )
    start_campaign(campaign, operator=fleet_operator, now=now)
    run_tick(now=now)
    assert OtaUpdate.objects.filter(campaign=campaign, state=UpdateState.OFFERED).count() == 0
    run_tick(now=now.replace(hour=23))
    assert OtaUpdate.objects.filter(campaign=campaign, state=UpdateState.OFFERED).count() == 10


def test_scheduled_campaign_waits_for_its_start(fleet, fleet_operator, ecm_release) -> None:
    start = timezone.now() + timedelta(hours=2)
    campaign = create_campaign(
        operator=fleet_operator, name="later", firmware_ids=[ecm_release.pk], start_at=start
    )
    start_campaign(campaign, operator=fleet_operator)
    run_tick()
    assert OtaUpdate.objects.filter(campaign=campaign).count() == 0
    run_tick(now=start + timedelta(seconds=1))
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING


def test_pause_stops_offers_and_cancel_cancels_what_has_not_started(
    fleet, fleet_operator, ecm_release, fake_packages
) -> None:
    campaign = create_campaign(
        operator=fleet_operator, name="c", firmware_ids=[ecm_release.pk], wave_percentages=[50, 100]
    )
    start_campaign(campaign, operator=fleet_operator)
    pause_campaign(campaign, operator=fleet_operator)
    run_tick()
    assert OtaUpdate.objects.filter(campaign=campaign).count() == 0
    resume_campaign(campaign, operator=fleet_operator)
    run_tick()
    assert len(offered(campaign)) == 5
    installing = offered(campaign)[0]
    record_status_report(
        vehicle=installing.vehicle,
        report={"update_id": installing.pk, "vmg_state": 3},
        source="http",
    )
    cancel_campaign(campaign, operator=fleet_operator)
    states = set(OtaUpdate.objects.filter(campaign=campaign).values_list("state", flat=True))
    assert states == {UpdateState.CANCELLED, UpdateState.INSTALLING}


def test_retry_failed_queues_failed_vehicles_again(fleet, fleet_operator, ecm_release) -> None:
    campaign = launch_campaign(
        fleet_operator, [ecm_release], target_vins=[fleet[0].vin], max_attempts=1
    )
    update = OtaUpdate.objects.get(campaign=campaign)
    fail(update)
    run_tick()
    assert retry_failed(campaign, operator=fleet_operator) == 1
    resume_campaign(campaign, operator=fleet_operator)
    run_tick()
    update.refresh_from_db()
    assert update.state == UpdateState.OFFERED


def test_a_vehicle_busy_with_another_campaign_waits(
    fleet, fleet_operator, ecm_release, registry
) -> None:
    from ota.tests.conftest import make_release

    tcm = make_release("TCM", "3.0.0", hardware=("2.0", "2.1"))
    first = launch_campaign(fleet_operator, [ecm_release], target_vins=[fleet[0].vin])
    second = launch_campaign(fleet_operator, [tcm], target_vins=[fleet[0].vin])
    assert OtaUpdate.objects.get(campaign=first).state == UpdateState.OFFERED
    assert OtaUpdate.objects.get(campaign=second).state == UpdateState.QUEUED


def _vin_parameters(queries: list[dict], vins: list[str]) -> int:
    """How many of `vins` the captured queries bind (as quoted literals in the SQL)."""
    return max((sum(f"'{vin}'" in q["sql"] for vin in vins) for q in queries), default=0)


def test_a_tick_binds_none_of_the_named_vins_once_each_has_its_record(
    fleet, fleet_operator, ecm_release, fake_packages
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    vins = [v.vin for v in fleet]
    campaign = launch_campaign(fleet_operator, [ecm_release], target_vins=vins)
    assert OtaUpdate.objects.filter(campaign=campaign).count() == len(vins)

    with CaptureQueriesContext(connection) as queries:
        summary = run_tick()

    assert summary.joined == 0
    assert _vin_parameters(queries.captured_queries, vins) == 0


def test_a_named_vin_registered_later_joins_and_only_it_is_looked_up(
    fleet, fleet_operator, ecm_release, fake_packages
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    latecomer_vin = "5YJ3E1EA7KF317001"
    register_vehicle(vin=latecomer_vin, model_name="Aurora", model_year=2026)
    vins = [v.vin for v in fleet]
    campaign = launch_campaign(fleet_operator, [ecm_release], target_vins=[*vins, latecomer_vin])
    # The latecomer was named but had no record at the fan-out: take it away, as if it had
    # registered after the campaign started.
    OtaUpdate.objects.filter(campaign=campaign, vehicle__vin=latecomer_vin).delete()

    with CaptureQueriesContext(connection) as queries:
        summary = run_tick()

    assert summary.joined == 1
    assert OtaUpdate.objects.filter(campaign=campaign, vehicle__vin=latecomer_vin).exists()
    assert _vin_parameters(queries.captured_queries, vins) == 0
