"""A VCI and a status report of the same vehicle at the same moment, on PostgreSQL: one lock
order, so neither deadlocks nor loses its data."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from ecus.models import Ecu
from ota.choices import UpdateState
from ota.models import OtaUpdate
from ota.services import check_for_update, record_status_report
from ota.tests.conftest import launch_campaign, serve_packages
from ota.vci import record_vci
from vehicles.models import VciSnapshot
from vehicles.services import register_vehicle

NEW = {"ECU_001": "2.0.0", "ECU_017": "2.0.0"}
ROUNDS = 12

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="row-lock deadlocks need PostgreSQL"
    ),
]


def _awaiting_reboot(fleet_operator, ecm_release) -> list[OtaUpdate]:
    for n in range(ROUNDS):
        register_vehicle(vin=f"1HGCM8263{n:08d}", model_name="Aurora", model_year=2026)
    launch_campaign(fleet_operator, [ecm_release])
    updates = list(OtaUpdate.objects.select_related("vehicle"))
    for update in updates:
        check_for_update(vehicle=update.vehicle)
        serve_packages(update)
        record_status_report(
            vehicle=update.vehicle, report={"update_id": update.pk, "vmg_state": 4}, source="http"
        )
    return updates


def _in_thread(barrier: threading.Barrier, errors: list[BaseException], work) -> threading.Thread:
    def run() -> None:
        try:
            barrier.wait(timeout=10)
            work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    return threading.Thread(target=run, daemon=True)


def test_a_vci_and_a_status_report_at_once_never_deadlock(
    registry, fleet_operator, ecm_release, fake_packages
) -> None:
    updates = _awaiting_reboot(fleet_operator, ecm_release)
    errors: list[BaseException] = []
    for update in updates:
        vehicle = update.vehicle
        ecus = [{"ecu_id": e, "sw_version": v, "hw_version": "2.0"} for e, v in NEW.items()]
        vci = {"vin": vehicle.vin, "timestamp": 1767225600, "trigger": "power_on", "ecus": ecus}
        report = {"update_id": update.pk, "vmg_state": 6, "running_versions": NEW}
        barrier = threading.Barrier(2)
        threads = [
            _in_thread(barrier, errors, lambda v=vehicle, d=vci: record_vci(vehicle=v, vci=d)),
            _in_thread(
                barrier,
                errors,
                lambda v=vehicle, r=report: record_status_report(
                    vehicle=v, report=r, source="http"
                ),
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive()
    assert errors == []
    assert VciSnapshot.objects.count() == ROUNDS  # no snapshot lost
    assert OtaUpdate.objects.filter(state=UpdateState.SUCCEEDED).count() == ROUNDS
    assert set(Ecu.objects.filter(ecu_id__in=NEW).values_list("sw_version", flat=True)) == {"2.0.0"}
