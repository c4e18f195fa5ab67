"""A campaign whose vehicles all report at once keeps one linear audit chain, on every database."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from core.audit import check_chain
from core.models import AuditEvent
from ota.choices import UpdateState
from ota.engine import run_tick
from ota.models import OtaUpdate
from ota.services import check_for_update, record_status_report
from ota.tests.conftest import launch_campaign, serve_packages
from vehicles.services import register_vehicle

VEHICLES = 20
WORKER_TICKS = 20
NEW = {"ECU_001": "2.0.0", "ECU_017": "2.0.0"}


def _vehicle_updates(update: OtaUpdate, start: threading.Barrier, errors: list[str]) -> None:
    try:
        start.wait(timeout=30)
        check_for_update(vehicle=update.vehicle)
        serve_packages(update)
        for sequence, report in enumerate(
            [{"vmg_state": 1, "percentage": 50}, {"vmg_state": 4}, {"vmg_state": 6}], start=1
        ):
            report = {"update_id": update.pk, "sequence": sequence, **report}
            if report["vmg_state"] == 6:
                report["running_versions"] = NEW
            record_status_report(vehicle=update.vehicle, report=report, source="mqtt")
    except Exception as exc:  # noqa: BLE001 - reported to the main thread
        errors.append(f"{update.vehicle.vin}: {exc!r}")
    finally:
        connections.close_all()


def _worker(start: threading.Barrier, stop: threading.Event, errors: list[str]) -> None:
    try:
        start.wait(timeout=30)
        for _ in range(WORKER_TICKS):
            if stop.is_set():
                break
            run_tick()
            time.sleep(0.01)
    except Exception as exc:  # noqa: BLE001 - reported to the main thread
        errors.append(f"worker: {exc!r}")
    finally:
        connections.close_all()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_campaign_with_vehicles_reporting_at_once_keeps_the_chain_linear(
    registry, fleet_operator, ecm_release, fake_packages
) -> None:
    for n in range(VEHICLES):
        register_vehicle(vin=f"1HGCM8263{n:08d}", model_name="Aurora", model_year=2026)
    campaign = launch_campaign(fleet_operator, [ecm_release])
    updates = list(OtaUpdate.objects.filter(campaign=campaign).select_related("vehicle"))
    assert len(updates) == VEHICLES

    start, stop, errors = threading.Barrier(VEHICLES + 1), threading.Event(), []
    threads = [
        threading.Thread(target=_vehicle_updates, args=(update, start, errors))
        for update in updates
    ]
    worker = threading.Thread(target=_worker, args=(start, stop, errors))
    for thread in [*threads, worker]:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    worker.join(timeout=60)
    assert not any(thread.is_alive() for thread in [*threads, worker])

    assert errors == []
    states = set(OtaUpdate.objects.filter(campaign=campaign).values_list("state", flat=True))
    assert states == {UpdateState.SUCCEEDED}
    predecessors = list(AuditEvent.objects.values_list("previous_hash", flat=True))
    assert len(predecessors) == len(set(predecessors)), "the audit chain forked"
    report = check_chain()
    assert report.intact, (report.broken_id, report.reason)
    assert report.count == AuditEvent.objects.count()
