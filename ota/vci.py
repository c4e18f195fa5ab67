"""A vehicle's configuration report (VCI): stored by vehicles, then judged against its updates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from core.db import retry_on_conflict
from ota.models import OtaUpdate
from ota.planning import analyse_vehicle
from ota.services import confirm_running_versions, lock_open_updates
from vehicles.models import VciSnapshot, Vehicle
from vehicles.services import check_vci_header, lock_vehicle_row, store_vci


@dataclass(frozen=True)
class VciResult:
    snapshot: VciSnapshot
    changed: list[str]
    outdated: list[dict[str, Any]]
    refused: str
    settled_update: OtaUpdate | None = None  # the update this report settled, if any


@retry_on_conflict()
def record_vci(*, vehicle: Vehicle, vci: Any, source: str = "http") -> VciResult:
    """Validate and store a VCI, update each ECU's software, settle an update awaiting reboot.

    Errors name the field, e.g. "ecus[3].sw_version"; nothing is stored on error.
    """
    header = check_vci_header(vehicle=vehicle, vci=vci)
    with transaction.atomic():
        # The lock order of ota.services: the vehicle row, then its updates, then its ECUs.
        # The ECU rows are written before the update is judged, so the update is locked first.
        lock_vehicle_row(vehicle)
        lock_open_updates(vehicle.pk)
        stored = store_vci(vehicle=vehicle, vci=vci, header=header, source=source)
        settled = confirm_running_versions(vehicle=vehicle, running=stored.running)
    plan = analyse_vehicle(vehicle.pk)
    return VciResult(
        snapshot=stored.snapshot,
        changed=stored.changed,
        outdated=plan.as_dict()["items"],
        refused=plan.refused,
        settled_update=settled,
    )
