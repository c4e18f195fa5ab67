"""The first VCI fills in what registration could not know (part numbers, suppliers, serials)
for every ECU; it writes those rows directly, and only the rows that changed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings

from core.api import DomainError
from ecus.models import Ecu
from ecus.versions import SemVer
from ota.vci import record_vci
from simulator.ecus import load_build_sheet

pytestmark = pytest.mark.django_db


def _report(vehicle) -> dict:
    ecus = load_build_sheet(Path(settings.ECU_REGISTRY_FILE), vehicle.vin)
    return {
        "vin": vehicle.vin,
        "timestamp": int(time.time()),
        "trigger": "power_on",
        "ecus": [ecu.vci_entry() for ecu in ecus.values()],
    }


def test_the_first_report_writes_every_ecus_identity_and_nothing_else(vehicle) -> None:
    report = _report(vehicle)
    planned = report["ecus"][0]["ecu_id"]
    Ecu.objects.filter(vehicle=vehicle, ecu_id=planned).update(target_sw_version="9.9.9")
    before = {e.ecu_id: e.updated_at for e in Ecu.objects.filter(vehicle=vehicle)}

    result = record_vci(vehicle=vehicle, vci=report)

    assert result.changed == []  # identity is not a software change
    stored = {e.ecu_id: e for e in Ecu.objects.filter(vehicle=vehicle)}
    assert len(stored) == len(report["ecus"]) == 100
    for entry in report["ecus"]:
        ecu = stored[entry["ecu_id"]]
        assert (ecu.part_number, ecu.supplier, ecu.serial_number) == (
            entry["part_number"], entry["supplier"], entry["serial_number"],
        )  # fmt: skip
        assert ecu.sw_version == entry["sw_version"]
        assert ecu.updated_at > before[ecu.ecu_id]
    assert stored[planned].target_sw_version == "9.9.9"


def test_a_repeated_report_writes_no_row_and_a_version_change_writes_one(vehicle) -> None:
    report = _report(vehicle)
    record_vci(vehicle=vehicle, vci=report)
    written = {e.ecu_id: e.updated_at for e in Ecu.objects.filter(vehicle=vehicle)}

    record_vci(vehicle=vehicle, vci={**report, "timestamp": report["timestamp"] + 1})
    assert {e.ecu_id: e.updated_at for e in Ecu.objects.filter(vehicle=vehicle)} == written

    first = report["ecus"][0]
    newer = [{**first, "sw_version": "1.0.1"}, *report["ecus"][1:]]
    result = record_vci(vehicle=vehicle, vci={**report, "ecus": newer})
    assert result.changed == [first["ecu_id"]]
    moved = [
        e.ecu_id for e in Ecu.objects.filter(vehicle=vehicle) if e.updated_at != written[e.ecu_id]
    ]
    assert moved == [first["ecu_id"]]
    ecu = Ecu.objects.get(vehicle=vehicle, ecu_id=first["ecu_id"])
    assert (ecu.sw_version, ecu.sw_version_key) == ("1.0.1", SemVer.coerce("1.0.1").sort_key)


def test_a_bad_entry_anywhere_leaves_every_row_as_it_was(vehicle) -> None:
    report = _report(vehicle)
    report["ecus"][57]["sw_version"] = "not a version"
    with pytest.raises(DomainError) as refused:
        record_vci(vehicle=vehicle, vci=report)
    assert refused.value.field == "ecus[57].sw_version"
    assert not Ecu.objects.filter(vehicle=vehicle).exclude(serial_number="").exists()
