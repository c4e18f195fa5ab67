"""OTA workflows: update checks, status reports and campaign control.

Entry points other components call:

    record_status_report(*, vehicle: Vehicle, report: dict, source: str) -> OtaUpdate
        One status report of a vehicle, from POST /api/v1/ota/status (source="http") or the MQTT
        status topic (source="mqtt"). `report` is the decoded JSON object:
          update_id    int, optional: defaults to the vehicle's open update
          report_id    str, optional: a repeated report_id is acknowledged and ignored
          sequence     int, optional: per-update counter; a report older than the last one is
                       stored as stale and changes nothing
          vmg_state    int 0..6 (IDLE, DOWNLOADING, VERIFYING, INSTALLING, READY, ERROR, COMPLETED)
                       or `state` with the same name as a string
          percentage   int 0..100, current_step str, error str
          running_versions  {ecu_id: version} the vehicle runs after reboot (proves success)
          rolled_back  bool: the vehicle booted back into the previous software
          package_proofs  {package_id: hex HMAC-SHA256 of the whole package file, keyed by the
                       attempt's possession_nonce}: evidence of possession for a package whose
                       download the server did not record in full
        Raises core.api.DomainError (400, field named) for bad input, NotFoundError (404) when
        there is no such update, ConflictError (409) for an invalid transition (which is stored).
        A report of an earlier phase of the open attempt (a vehicle that restarted, or a server
        that crashed before committing the vehicle's last report) is kept as "behind" and
        answered with the current state, never with 409.

    record_download_progress(*, vehicle_id, package_id, first, count) -> None
        Bytes of a zone package just served to a vehicle; the evidence a success needs, and a
        sign of life that keeps a long download from timing out.

Truth rules: an update succeeds only when every package of its plan was served to the vehicle
in full during this attempt, or the vehicle proves it holds it (package_proofs), AND the vehicle shows the target versions running; running versions
nobody offered are refused and never reach the ECU registry; a VCI contradicting a success
reopens it.

Lock order, everywhere, to rule out deadlocks between VCIs, status reports, downloads and the
campaign worker: the Vehicle row first (SELECT ... FOR UPDATE), then its OtaUpdate rows, then
its Ecu rows, then the rest. Several vehicles are locked in primary-key order. Entry points are
wrapped in `retry_on_conflict`, so a deadlock or serialization failure that still happens (say
with a process that does not follow the order) is run again, a bounded number of times.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.api import ConflictError, DomainError, NotFoundError
from core.audit import record_event
from core.db import retry_on_conflict
from core.events import campaign_group, publish_event, vehicle_group
from core.mqtt.publisher import publish_desired_state
from ecus.models import Ecu, SoftwareChange
from ecus.versions import InvalidVersion, SemVer
from firmware.models import Firmware, ZonePackage
from ota.choices import ReportSource, UpdateState, VmgState
from ota.models import ACTIVE_STATES, TERMINAL_STATES, OtaUpdate, UpdateReport
from ota.planning import analyse_vehicle
from ota.served_ranges import add_range, covers
from ota.state_machine import (
    InvalidTransition,
    check_vehicle_move,
    is_behind,
    judge_running_versions,
    next_step,
    progress_target,
)
from vehicles.choices import VehicleStatus
from vehicles.models import Vehicle

logger = logging.getLogger(__name__)

WORKER_ACTOR = "system:campaign-worker"
PACKAGE_PATH = "/api/v1/ota/package/{id}"
CHECK_PATH = "/api/v1/ota/check"


# ---------------------------------------------------------------------------------------------
# Events and audit helpers shared by the OTA workflows.


def update_event(update: OtaUpdate, vin: str) -> dict[str, Any]:
    return {
        "kind": "update_state",
        "update_id": update.pk,
        "vin": vin,
        "campaign_id": update.campaign_id,
        "state": update.state,
        "vmg_state": update.vmg_state,
        "progress": update.progress_percent,
        "current_step": update.current_step,
        "error": update.error,
    }


def publish_update(update: OtaUpdate, vin: str) -> None:
    """Tell dashboards about a record's new state (after commit)."""
    event = update_event(update, vin)
    publish_event(vehicle_group(vin), event)
    if update.campaign_id:
        publish_event(campaign_group(update.campaign_id), event)


def pending_update_document(
    update_id: int, campaign_id: int | None, attempt: int = 0
) -> dict[str, Any]:
    """The `pending_update` of a vehicle's retained desired state (docs/PROTOCOL.md).

    (update_id, attempt) names one offer: a vehicle that already finished it ignores the
    retained copy it gets again at every reconnect.
    """
    return {
        "update_id": update_id,
        "campaign_id": campaign_id,
        "attempt": attempt,
        "check_url": settings.OTA_PUBLIC_BASE_URL + CHECK_PATH,
    }


def lock_open_updates(vehicle_id: int) -> None:
    """The second lock of the lock order: the vehicle's updates a VCI may judge."""
    list(
        OtaUpdate.objects.select_for_update()
        .filter(vehicle_id=vehicle_id, state__in=[*ACTIVE_STATES, UpdateState.SUCCEEDED])
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def lock_vehicles(vehicle_ids: list[int]) -> None:
    """Take the first lock of the lock order (module docstring) on these vehicles' rows."""
    if vehicle_ids:
        list(
            Vehicle.objects.select_for_update()
            .filter(pk__in=vehicle_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )


def mark_in_flight(offers: list[tuple[OtaUpdate, str]]) -> None:
    """Updates just offered: their vehicles are `updating` and learn of the offer over MQTT.

    `offers` holds (update, vin) pairs. The retained desired state goes out after commit, so a
    vehicle never hears of an offer the database does not hold.
    """
    if not offers:
        return
    Vehicle.objects.filter(pk__in=[update.vehicle_id for update, _ in offers]).exclude(
        status=VehicleStatus.DECOMMISSIONED
    ).update(status=VehicleStatus.UPDATING)
    for update, vin in offers:
        publish_desired_state(
            vin=vin,
            pending_update=pending_update_document(update.pk, update.campaign_id, update.attempts),
        )


def settle_vehicles(vehicles: dict[int, str]) -> None:
    """Vehicles whose update ended (finished or cancelled): back to `active`, desired state cleared.

    `vehicles` maps vehicle id to VIN. A vehicle that still has an update in flight keeps
    `updating` and its desired state names that update instead.
    """
    if not vehicles:
        return
    open_updates: dict[int, tuple[int, int | None, int]] = {}
    for vehicle_id, update_id, campaign_id, attempts in (
        OtaUpdate.objects.filter(vehicle_id__in=list(vehicles), state__in=ACTIVE_STATES)
        .order_by("offered_at", "id")
        .values_list("vehicle_id", "id", "campaign_id", "attempts")
    ):
        open_updates[vehicle_id] = (update_id, campaign_id, attempts)  # the newest one wins
    idle = [vehicle_id for vehicle_id in vehicles if vehicle_id not in open_updates]
    Vehicle.objects.filter(pk__in=idle, status=VehicleStatus.UPDATING).update(
        status=VehicleStatus.ACTIVE
    )
    for vehicle_id, vin in vehicles.items():
        pending = open_updates.get(vehicle_id)
        publish_desired_state(
            vin=vin, pending_update=pending_update_document(*pending) if pending else None
        )


def audit_outcome(update: OtaUpdate, vin: str, *, actor: Any, running: dict[str, str]) -> None:
    """A vehicle outcome for the R156 record: before/after versions per ECU."""
    record_event(
        action=f"ota.update.{update.state}",
        actor=actor,
        vehicle_vin=vin,
        object_type="ota_update",
        object_id=update.pk,
        before=update.source_versions(),
        after=running or update.target_versions(),
        details={
            "campaign_id": update.campaign_id,
            "targets": update.target_versions(),
            "error": update.error,
            "attempt": update.attempts,
        },
    )


def retry_at(update: OtaUpdate, now: Any) -> Any:
    """When a failed update is offered again, or None when its attempts are used up."""
    campaign = update.campaign
    if campaign is None or update.attempts >= campaign.max_attempts:
        return None
    # Exponential backoff: the base delay, doubled for each attempt already made.
    delay = campaign.retry_backoff_seconds * (2 ** max(update.attempts - 1, 0))
    return now + timedelta(seconds=delay)


def finish_update(
    update: OtaUpdate,
    vin: str,
    *,
    state: str,
    error: str = "",
    actor: Any,
    running: dict[str, str] | None = None,
    retry: bool = True,
    now: Any = None,
) -> None:
    """Move a record to a terminal state and write the outcome; the caller holds the transaction."""
    now = now or timezone.now()
    update.state = state
    update.error = error[:500]
    update.finished_at = now
    update.deadline_at = None
    update.next_action_at = retry_at(update, now) if retry and state == UpdateState.FAILED else None
    update.save(
        update_fields=[
            "state",
            "error",
            "finished_at",
            "deadline_at",
            "next_action_at",
            "updated_at",
        ]
    )
    if running:
        # The registry follows what the vehicle runs, but only versions this update offered
        # (its targets) or left (its sources): anything else was refused before we got here.
        apply_running_versions(update, _offered_versions(update, running))
    if state != UpdateState.SUCCEEDED:
        # The update is over without its versions: its ECUs no longer head for them (a retry
        # plans again and sets them anew).
        _clear_targets(update)
    audit_outcome(update, vin, actor=actor, running=running or {})
    settle_vehicles({update.vehicle_id: vin})
    publish_update(update, vin)
    if update.campaign_id:
        from ota.campaigns import publish_campaign_progress

        publish_campaign_progress(update.campaign_id)


def _clear_targets(update: OtaUpdate) -> None:
    """Drop the target versions this update set on its vehicle's ECUs, if still its own."""
    by_version: dict[str, list[str]] = defaultdict(list)
    for ecu_id, version in update.target_versions().items():
        by_version[version].append(ecu_id)
    for version, ecu_ids in by_version.items():
        Ecu.objects.filter(
            vehicle_id=update.vehicle_id, ecu_id__in=ecu_ids, target_sw_version=version
        ).update(target_sw_version="")


def _same_version(a: str, b: str) -> bool:
    try:
        return SemVer.coerce(a) == SemVer.coerce(b)
    except InvalidVersion:
        return a == b


def _offered_versions(update: OtaUpdate, running: dict[str, str]) -> dict[str, str]:
    targets, sources = update.target_versions(), update.source_versions()
    return {
        ecu_id: version
        for ecu_id, version in running.items()
        if ecu_id in targets
        and (_same_version(version, targets[ecu_id]) or _same_version(version, sources[ecu_id]))
    }


def unoffered_versions(update: OtaUpdate, running: dict[str, str]) -> dict[str, str]:
    """Running versions of planned ECUs that are neither this update's target nor source."""
    offered = _offered_versions(update, running)
    targets = update.target_versions()
    return {
        ecu_id: version
        for ecu_id, version in running.items()
        if ecu_id in targets and ecu_id not in offered
    }


def apply_running_versions(update: OtaUpdate, running: dict[str, str]) -> None:
    """Record the versions a successful update left running, with the software history."""
    ecus = {
        ecu.ecu_id: ecu
        for ecu in Ecu.objects.filter(vehicle_id=update.vehicle_id, ecu_id__in=list(running))
    }
    changes = []
    changed = []
    for ecu_id, version in running.items():
        ecu = ecus.get(ecu_id)
        if ecu is None or ecu.sw_version == version:
            continue
        changes.append(
            SoftwareChange(
                vehicle_id=update.vehicle_id,
                ecu=ecu,
                from_version=ecu.sw_version,
                to_version=version,
                source="ota",
                update_id=update.pk,
            )
        )
        ecu.sw_version = version
        ecu.sw_version_key = SemVer.coerce(version).sort_key
        ecu.target_sw_version = ""
        changed.append(ecu)
    if changed:
        Ecu.objects.bulk_update(changed, ["sw_version", "sw_version_key", "target_sw_version"])
        SoftwareChange.objects.bulk_create(changes)


# ---------------------------------------------------------------------------------------------
# Update check and packages.


@dataclass
class UpdateCheck:
    """The answer to a vehicle's update check."""

    update: OtaUpdate | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    packages: list[dict[str, Any]] = field(default_factory=list)
    refused: str = ""

    @property
    def possession_nonce(self) -> str | None:
        return self.update.plan.get("possession_nonce") if self.update_available else None

    @property
    def update_available(self) -> bool:
        return bool(self.update is not None and self.update.is_active() and self.items)

    @property
    def next_step(self) -> str:
        """What the vehicle should do next for this attempt, from the server's record."""
        return next_step(self.update.state) if self.update_available else "none"


_package_build_lock = threading.Lock()


def zone_package_builder() -> Callable[..., Any]:
    """The firmware app's package builder; looked up at call time so tests can replace it."""
    from firmware.services import get_or_build_zone_package

    return get_or_build_zone_package


def open_update_for(vehicle: Vehicle) -> OtaUpdate | None:
    """The update the vehicle is working on now, if any (newest first)."""
    # No select_related: the campaign is needed only when the plan is first computed.
    return (
        OtaUpdate.objects.filter(vehicle=vehicle, state__in=ACTIVE_STATES)
        .order_by("-offered_at", "-id")
        .first()
    )


def check_for_update(*, vehicle: Vehicle) -> UpdateCheck:
    """Answer an update check: the plan of the vehicle's open update and its zone packages.

    The plan is computed once, at the first check after the offer, in a fixed number of queries.
    Packages are built outside the transaction because signing is slow.
    """
    update = open_update_for(vehicle)
    if update is None:
        return UpdateCheck()
    if "items" not in update.plan:
        update = _plan_update(update, vehicle)
        if not update.is_active():
            return UpdateCheck(update=update, refused=update.plan.get("refused", ""))
    if not _packages_fresh(update, timezone.now()):
        _attach_packages(update, vehicle)
    return UpdateCheck(
        update=update,
        items=update.plan.get("items", []),
        packages=update.plan.get("packages", []),
    )


@retry_on_conflict()
@transaction.atomic
def _plan_update(update: OtaUpdate, vehicle: Vehicle) -> OtaUpdate:
    lock_vehicles([vehicle.pk])
    campaign = update.campaign
    firmware_ids = (
        set(campaign.campaign_firmware.values_list("firmware_id", flat=True)) if campaign else None
    )
    plan = analyse_vehicle(
        vehicle.pk,
        firmware_ids=firmware_ids,
        zones=campaign.target_zones if campaign else (),
    )
    # A fresh nonce per attempt (the plan is reset on every offer) keys the proofs of
    # possession, so a proof made for an earlier attempt proves nothing about this one.
    update.plan = {**plan.as_dict(), "possession_nonce": secrets.token_hex(32)}
    claimed = OtaUpdate.objects.filter(pk=update.pk, state=update.state).update(
        plan=update.plan, updated_at=timezone.now()
    )
    if not claimed:
        # A report or the worker moved the record meanwhile; answer from its current state.
        return OtaUpdate.objects.select_related("campaign").get(pk=update.pk)
    if plan.refused:
        # Retrying cannot help until firmware changes: no automatic retry.
        finish_update(
            update,
            vehicle.vin,
            state=UpdateState.FAILED,
            error=f"refused: {plan.refused}",
            actor=WORKER_ACTOR,
            retry=False,
        )
    elif not plan.items:
        finish_update(
            update,
            vehicle.vin,
            state=UpdateState.SUCCEEDED,
            actor=WORKER_ACTOR,
            running={},
            retry=False,
        )
    else:
        _set_targets(vehicle, {item.ecu_id: item.to_version for item in plan.items})
    return update


def _set_targets(vehicle: Vehicle, targets: dict[str, str]) -> None:
    """Record each ECU's target version; one UPDATE per distinct version, not per ECU."""
    by_version: dict[str, list[str]] = defaultdict(list)
    for ecu_id, version in targets.items():
        by_version[version].append(ecu_id)
    for version, ecu_ids in by_version.items():
        Ecu.objects.filter(vehicle=vehicle, ecu_id__in=ecu_ids).update(target_sw_version=version)


def _packages_fresh(update: OtaUpdate, now: Any) -> bool:
    packages = update.plan.get("packages")
    if not packages:
        return False
    return all(p.get("expires_at", "") > now.isoformat() for p in packages)


def _attach_packages(update: OtaUpdate, vehicle: Vehicle) -> None:
    """Build (or reuse) the signed zone package of each zone the plan touches."""
    from firmware.services import PackageItem

    items = update.plan.get("items", [])
    if not items:
        return
    firmware = Firmware.objects.in_bulk({item["firmware_id"] for item in items})
    by_zone: dict[str, list[PackageItem]] = defaultdict(list)
    for item in items:
        by_zone[item["zonal_gateway_id"]].append(
            PackageItem(
                ecu_id=item["ecu_id"],
                firmware=firmware[item["firmware_id"]],
                current_version=item["from_version"],
                hardware_version=item["hardware_version"],
            )
        )
    build = zone_package_builder()
    packages = []
    for zone_id, zone_items in by_zone.items():
        # Vehicles with the same zone content share one package. Two checks building it at
        # once would each store a file under the same id, the later replacing the earlier and
        # leaving the first vehicle a plan whose hash no longer matches: build one at a time.
        with _package_build_lock:
            package = build(vehicle=vehicle, zonal_gateway_id=zone_id, items=zone_items)
        packages.append(
            {
                "zonal_gateway_id": zone_id,
                "package_id": str(package.pk),
                "size": package.size,
                "sha256": package.sha256,
                "download_url": settings.OTA_PUBLIC_BASE_URL + PACKAGE_PATH.format(id=package.pk),
                "expires_at": package.expires_at.isoformat(),
                "ecus": [entry.ecu_id for entry in zone_items],
            }
        )
    update.plan = {**update.plan, "packages": packages}
    OtaUpdate.objects.filter(pk=update.pk).update(plan=update.plan, updated_at=timezone.now())


def request_packages(
    *, vehicle: Vehicle, update_id: int | None = None, zonal_gateway_id: str = ""
) -> tuple[OtaUpdate, list[dict[str, Any]]]:
    """The zone packages of the vehicle's open update, built on demand, optionally one zone."""
    update = _open_update(vehicle, update_id)
    check = check_for_update(vehicle=vehicle)
    if check.update is None or check.update.pk != update.pk or not check.update.is_active():
        raise ConflictError("the update has no installable plan", field="update_id")
    # An explicit request resolves the packages again, so a vehicle whose download no longer
    # matches its plan (the package was rebuilt) gets the current id, size and hash.
    _attach_packages(check.update, vehicle)
    packages = check.update.plan.get("packages", [])
    if zonal_gateway_id:
        packages = [p for p in packages if p["zonal_gateway_id"] == zonal_gateway_id]
        if not packages:
            raise DomainError(
                f"the plan has no package for {zonal_gateway_id}", field="zonal_gateway_id"
            )
    return check.update, packages


def _open_update(vehicle: Vehicle, update_id: int | None) -> OtaUpdate:
    if update_id is None:
        update = open_update_for(vehicle)
        if update is None:
            raise NotFoundError("this vehicle has no open update", field="update_id")
        return update
    update = (
        OtaUpdate.objects.select_related("campaign").filter(pk=update_id, vehicle=vehicle).first()
    )
    if update is None:
        # Another vehicle's update id is answered like a missing one: ids leak nothing.
        raise NotFoundError(f"no update {update_id} for this vehicle", field="update_id")
    return update


# ---------------------------------------------------------------------------------------------
# Status reports.


@dataclass(frozen=True)
class StatusReport:
    """A validated status report."""

    update_id: int | None
    report_key: str
    sequence: int | None
    vmg_state: int
    percentage: int | None
    current_step: str
    error: str
    running_versions: dict[str, str]
    rolled_back: bool
    package_proofs: dict[str, str] = field(default_factory=dict)


def _optional_int(report: dict, name: str, *, low: int, high: int | None = None) -> int | None:
    value = report.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError("must be an integer", field=name)
    if value < low or (high is not None and value > high):
        raise DomainError(
            f"must be between {low} and {high}" if high else f"must be >= {low}", field=name
        )
    return value


def _optional_text(report: dict, name: str, limit: int) -> str:
    value = report.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DomainError("must be a string", field=name)
    if len(value) > limit:
        raise DomainError(f"must be at most {limit} characters", field=name)
    return value


def _vmg_state_of(report: dict) -> int:
    if "vmg_state" in report:
        code = _optional_int(report, "vmg_state", low=0, high=6)
        if code is None:
            raise DomainError("must be an integer 0..6", field="vmg_state")
        return code
    name = report.get("state")
    if isinstance(name, int) and not isinstance(name, bool) and 0 <= name <= 6:
        return name
    if isinstance(name, str) and name.upper() in VmgState.names:
        return VmgState[name.upper()].value
    if name is None:
        raise DomainError(
            "vmg_state (0..6) or state (a VMG state name) is required", field="vmg_state"
        )
    raise DomainError(f"must be one of {', '.join(VmgState.names)}", field="state")


def _running_versions(report: dict) -> dict[str, str]:
    value = report.get("running_versions") or {}
    if not isinstance(value, dict):
        raise DomainError("must be an object of ecu_id: version", field="running_versions")
    for ecu_id, version in value.items():
        try:
            SemVer.coerce(version)
        except InvalidVersion as exc:
            raise DomainError(str(exc), field=f"running_versions.{ecu_id}")
    return {str(k): str(v) for k, v in value.items()}


_PROOF = re.compile(r"[0-9a-fA-F]{64}")


def _package_proofs(report: dict) -> dict[str, str]:
    value = report.get("package_proofs") or {}
    if not isinstance(value, dict):
        raise DomainError("must be an object of package_id: hex HMAC", field="package_proofs")
    for package_id, digest in value.items():
        if not isinstance(digest, str) or not _PROOF.fullmatch(digest):
            raise DomainError(
                "must be 64 hex digits (HMAC-SHA256)", field=f"package_proofs.{package_id}"
            )
    return {str(k): v.lower() for k, v in value.items()}


def parse_status_report(report: Any) -> StatusReport:
    """Validate a status report; errors name the field at fault."""
    if not isinstance(report, dict):
        raise DomainError("a status report is a JSON object", field="non_field_errors")
    report_id = _optional_text(report, "report_id", 64)
    sequence = _optional_int(report, "sequence", low=0)
    rolled_back = report.get("rolled_back", False)
    if not isinstance(rolled_back, bool):
        raise DomainError("must be true or false", field="rolled_back")
    return StatusReport(
        update_id=_optional_int(report, "update_id", low=1),
        report_key=f"id:{report_id}"
        if report_id
        else (f"seq:{sequence}" if sequence is not None else ""),
        sequence=sequence,
        vmg_state=_vmg_state_of(report),
        percentage=_optional_int(report, "percentage", low=0, high=100),
        current_step=_optional_text(report, "current_step", 200),
        error=_optional_text(report, "error", 500),
        running_versions=_running_versions(report),
        rolled_back=rolled_back,
        package_proofs=_package_proofs(report),
    )


def _target_of(update: OtaUpdate, report: StatusReport) -> tuple[str, str]:
    """The state a report asks for, and the error text that goes with it."""
    targets = update.target_versions()
    running = report.running_versions
    if report.rolled_back:
        return UpdateState.ROLLED_BACK, report.error or "the vehicle rolled back"
    if report.vmg_state == VmgState.ERROR:
        if (
            running
            and targets
            and all(
                running.get(ecu) == version for ecu, version in update.source_versions().items()
            )
        ):
            return UpdateState.ROLLED_BACK, report.error or "the vehicle rolled back"
        return UpdateState.FAILED, report.error or "the vehicle reported an error"
    if report.vmg_state in (VmgState.COMPLETED, VmgState.IDLE) and running and targets:
        state, reason = judge_running_versions(
            targets=targets, sources=update.source_versions(), running=running
        )
        if state != UpdateState.AWAITING_REBOOT or report.vmg_state == VmgState.COMPLETED:
            return state, reason
    if report.vmg_state == VmgState.COMPLETED:
        # Success is only believed once the new versions are seen running after the reboot.
        return UpdateState.AWAITING_REBOOT, ""
    if report.vmg_state == VmgState.IDLE:
        return update.state, ""
    return progress_target(report.vmg_state, report.percentage) or update.state, ""


def _lock_update(vehicle: Vehicle, update_id: int | None) -> OtaUpdate:
    # Locks the record's row only (PostgreSQL refuses FOR UPDATE on the nullable side of an
    # outer join); its campaign and wave come in the same query, for reading, as before.
    query = (
        OtaUpdate.objects.select_for_update(of=("self",))
        .select_related("campaign", "wave")
        .filter(vehicle=vehicle)
    )
    if update_id is not None:
        update = query.filter(pk=update_id).first()
    else:
        update = query.filter(state__in=ACTIVE_STATES).order_by("-offered_at", "-id").first()
    if update is None:
        raise NotFoundError(
            f"no update {update_id} for this vehicle"
            if update_id
            else "this vehicle has no open update",
            field="update_id",
        )
    update.vehicle = vehicle
    return update


def _store_report(
    update: OtaUpdate,
    report: StatusReport,
    raw: dict,
    *,
    source: str,
    before: str,
    outcome: str,
    reason: str = "",
) -> None:
    UpdateReport.objects.create(
        update=update,
        report_key=report.report_key,
        sequence=report.sequence,
        source=source,
        payload=raw,
        state_before=before,
        state_after=update.state,
        outcome=outcome,
        reason=reason[:300],
    )


def _refuse(
    update: OtaUpdate,
    vehicle: Vehicle,
    report: StatusReport,
    raw: dict,
    *,
    source: str,
    before: str,
    requested: str,
    reason: str,
) -> None:
    """Keep and audit a refused report; the caller answers 409."""
    _store_report(
        update, report, raw, source=source, before=before, outcome="refused", reason=reason
    )
    record_event(
        action="ota.report.refused",
        actor=f"vehicle:{vehicle.vin}",
        vehicle_vin=vehicle.vin,
        object_type="ota_update",
        object_id=update.pk,
        details={"state": before, "requested": requested, "reason": reason, "report": raw},
    )


def _keep_alive(update: OtaUpdate, now: Any) -> None:
    """A vehicle that reports is alive: its silence timeout restarts."""
    timeout = (
        update.campaign.timeout_seconds()
        if update.campaign
        else settings.OTA_VEHICLE_TIMEOUT_SECONDS
    )
    update.deadline_at = now + timedelta(seconds=timeout)


@transaction.atomic
def _apply_report(
    vehicle: Vehicle, report: StatusReport, raw: dict, source: str
) -> tuple[OtaUpdate, str, str]:
    """Apply one report under the record's row lock.

    Returns the record, and a refusal and the field at fault when the report is refused.
    """
    lock_vehicles([vehicle.pk])
    update = _lock_update(vehicle, report.update_id)
    before = update.state
    if (
        report.report_key
        and UpdateReport.objects.filter(update=update, report_key=report.report_key).exists()
    ):
        return update, "", ""  # a repeat of a report already handled: acknowledged
    if (
        report.sequence is not None
        and update.last_sequence is not None
        and report.sequence < update.last_sequence
    ):
        _store_report(
            update,
            report,
            raw,
            source=source,
            before=before,
            outcome="stale",
            reason=f"older than sequence {update.last_sequence}",
        )
        return update, "", ""
    strange = unoffered_versions(update, report.running_versions)
    if strange:
        ecu_id, version = sorted(strange.items())[0]
        reason = f"{ecu_id} {version} was never offered to this vehicle"
        _refuse(
            update, vehicle, report, raw, source=source, before=before, requested="", reason=reason
        )
        return update, reason, f"running_versions.{ecu_id}"
    target, error = _target_of(update, report)
    unproven, field_at_fault = _accept_proofs(update, report.package_proofs)
    if not unproven and target == UpdateState.SUCCEEDED:
        unproven, field_at_fault = _missing_evidence(update)
    if unproven:
        # The vehicle's word alone is not enough: we must have served it the packages, or it
        # must prove it holds them.
        reason = unproven
        _refuse(
            update,
            vehicle,
            report,
            raw,
            source=source,
            before=before,
            requested=target,
            reason=reason,
        )
        return update, reason, field_at_fault
    if before in TERMINAL_STATES and target == before:
        # A second report of the outcome already recorded (say a status after the VCI that
        # settled it): acknowledged, but the outcome is not written twice.
        _store_report(
            update,
            report,
            raw,
            source=source,
            before=before,
            outcome="stale",
            reason=f"the update is already {before}",
        )
        return update, "", ""
    if is_behind(before, target):
        # A vehicle that restarted (or whose last report died with a crashed server) repeats an
        # earlier phase of the same attempt: it is alive and is answered with where we stand.
        now = timezone.now()
        update.last_report_at = now
        _keep_alive(update, now)
        update.save(update_fields=["last_report_at", "deadline_at", "updated_at"])
        _store_report(
            update,
            report,
            raw,
            source=source,
            before=before,
            outcome="behind",
            reason=f"the update is already {before}",
        )
        return update, "", ""
    try:
        check_vehicle_move(before, target)
    except InvalidTransition as exc:
        _refuse(
            update,
            vehicle,
            report,
            raw,
            source=source,
            before=before,
            requested=target,
            reason=str(exc),
        )
        return update, str(exc), "vmg_state"
    _move(update, vehicle, report, target=target, error=error)
    _store_report(update, report, raw, source=source, before=before, outcome="applied")
    return update, "", ""


PROOF_CHUNK = 1 << 20
NEVER_SERVED = "the update's packages were never served to this vehicle in full"


def package_proof(package_id: str, nonce: str) -> str | None:
    """HMAC-SHA256 of the stored package file keyed by the nonce; None when the file is gone."""
    package = ZonePackage.objects.filter(pk=package_id).first()
    if package is None:
        return None
    digest = hmac.new(bytes.fromhex(nonce), digestmod=hashlib.sha256)
    try:
        with package.file.storage.open(package.file.name, "rb") as fh:
            while chunk := fh.read(PROOF_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _accept_proofs(update: OtaUpdate, proofs: dict[str, str]) -> tuple[str, str]:
    """Check the proofs of possession a report carries; ("", "") when every one matches.

    A matching proof is evidence as good as the package served in full, so it is kept in the
    served record: the VCI that later settles an update awaiting reboot carries no proofs.
    """
    nonce = update.plan.get("possession_nonce")
    sizes = {
        package["package_id"]: package["size"] for package in update.plan.get("packages") or []
    }
    for package_id, sent in sorted(proofs.items()):
        expected = package_proof(package_id, nonce) if nonce and package_id in sizes else None
        if expected is None or not hmac.compare_digest(sent, expected):
            return (
                f"the proof of possession of package {package_id} does not match",
                f"package_proofs.{package_id}",
            )
    if proofs:
        served = dict(update.served_bytes)
        for package_id in proofs:
            served[package_id] = add_range(served.get(package_id, []), 0, sizes[package_id])
        update.served_bytes = served
        OtaUpdate.objects.filter(pk=update.pk).update(served_bytes=served)
    return "", ""


def _missing_evidence(update: OtaUpdate) -> tuple[str, str]:
    """Why a success is not proven, and the field at fault; ("", "") when it is.

    Each package must have been served in full, or proven by an HMAC keyed by this attempt's
    nonce (which `_accept_proofs` then recorded as served).
    """
    if not update.packages_served():
        return NEVER_SERVED, "running_versions"
    return "", ""


def _move(
    update: OtaUpdate, vehicle: Vehicle, report: StatusReport, *, target: str, error: str
) -> None:
    now = timezone.now()
    update.vmg_state = report.vmg_state
    if report.percentage is not None:
        update.progress_percent = report.percentage
    if report.current_step:
        update.current_step = report.current_step
    if report.sequence is not None:
        update.last_sequence = max(report.sequence, update.last_sequence or 0)
    update.last_report_at = now
    fields = ["vmg_state", "progress_percent", "current_step", "last_sequence", "last_report_at"]
    if target in (UpdateState.SUCCEEDED, UpdateState.FAILED, UpdateState.ROLLED_BACK):
        # The final report's own step, or none: an earlier "waiting for reboot" is over.
        update.current_step = report.current_step or ""
        update.save(update_fields=[*fields, "updated_at"])
        finish_update(
            update,
            vehicle.vin,
            state=target,
            error=error,
            actor=f"vehicle:{vehicle.vin}",
            running=report.running_versions,
        )
        return
    changed = target != update.state
    update.state = target
    _keep_alive(update, now)
    update.save(update_fields=[*fields, "state", "deadline_at", "updated_at"])
    if changed or report.percentage is not None:
        publish_update(update, vehicle.vin)


@retry_on_conflict()
def record_status_report(*, vehicle: Vehicle, report: dict, source: str) -> OtaUpdate:
    """Apply a vehicle's status report (REST or MQTT); see the module docstring for the fields.

    The refusal of an invalid transition is committed (report row and audit event) before the
    ConflictError is raised, so the record of it survives the 409.
    """
    if source not in ReportSource.values:
        raise DomainError(f"unknown report source {source!r}", field="source")
    parsed = parse_status_report(report)
    try:
        update, refusal, field_at_fault = _apply_report(vehicle, parsed, report, source)
    except IntegrityError:
        # The same report_key raced in on another connection; the first one won.
        update = _open_update(vehicle, parsed.update_id)
        return update
    if refusal:
        raise ConflictError(refusal, field=field_at_fault, code="invalid_transition")
    return update


def confirm_running_versions(*, vehicle: Vehicle, running: dict[str, str]) -> OtaUpdate | None:
    """Judge the vehicle's updates against the versions a VCI shows running.

    Settles an update waiting for its reboot, and reopens the vehicle's latest success when the
    VCI contradicts it. Call inside the VCI's transaction, holding the vehicle's row lock.
    """
    update = (
        OtaUpdate.objects.select_for_update()
        .filter(vehicle=vehicle, state__in=[*ACTIVE_STATES, UpdateState.SUCCEEDED])
        .order_by("-offered_at", "-id")
        .first()
    )
    if update is None or not update.plan.get("items"):
        return None
    if update.campaign_id:
        update.campaign  # noqa: B018
    if update.state == UpdateState.SUCCEEDED:
        return _reopen_contradicted(update, vehicle, running)
    if update.state not in (UpdateState.INSTALLING, UpdateState.AWAITING_REBOOT):
        return None
    targets = update.target_versions()
    state, reason = judge_running_versions(
        targets=targets, sources=update.source_versions(), running=running
    )
    if state == UpdateState.AWAITING_REBOOT:
        return update
    if update.state == UpdateState.INSTALLING and state != UpdateState.SUCCEEDED:
        # Still installing: old versions in a VCI only mean the reboot has not happened yet.
        return update
    if state == UpdateState.SUCCEEDED and not update.packages_served():
        record_event(
            action="ota.update.unproven",
            actor=f"vehicle:{vehicle.vin}",
            vehicle_vin=vehicle.vin,
            object_type="ota_update",
            object_id=update.pk,
            details={"running": running, "reason": "packages never served in full"},
        )
        return update
    finish_update(
        update,
        vehicle.vin,
        state=state,
        error=reason,
        actor=f"vehicle:{vehicle.vin}",
        running={ecu: running[ecu] for ecu in targets},
    )
    return update


def _reopen_contradicted(
    update: OtaUpdate, vehicle: Vehicle, running: dict[str, str]
) -> OtaUpdate | None:
    """A success the vehicle's own VCI contradicts is not a success: it failed or rolled back."""
    targets = update.target_versions()
    shown = {ecu: running[ecu] for ecu in targets if ecu in running}
    if all(_same_version(version, targets[ecu]) for ecu, version in shown.items()):
        return None
    state, reason = judge_running_versions(
        targets=targets, sources=update.source_versions(), running={**targets, **shown}
    )
    record_event(
        action="ota.update.reopened",
        actor=f"vehicle:{vehicle.vin}",
        vehicle_vin=vehicle.vin,
        object_type="ota_update",
        object_id=update.pk,
        before={"state": update.state, "versions": targets},
        after={"state": state, "versions": shown},
        details={"reason": reason},
    )
    finish_update(
        update,
        vehicle.vin,
        state=state,
        error=f"a later VCI contradicts the success: {reason}",
        actor=f"vehicle:{vehicle.vin}",
    )
    return update


# ---------------------------------------------------------------------------------------------
# Download evidence.


def _open_update_serving(vehicle_id: int, package_id: str) -> OtaUpdate | None:
    for update in OtaUpdate.objects.select_for_update().filter(
        vehicle_id=vehicle_id, state__in=ACTIVE_STATES
    ):
        if any(p["package_id"] == package_id for p in update.plan.get("packages", [])):
            return update
    return None


@retry_on_conflict()
@transaction.atomic
def record_download_progress(*, vehicle_id: int, package_id: str, first: int, count: int) -> None:
    """Record `count` bytes of a package served to a vehicle from byte `first`.

    The record keeps how far the package was served contiguously from its start (resumed
    ranges extend it), and a download in progress keeps the update alive like a report.
    """
    if count <= 0:
        return
    lock_vehicles([vehicle_id])
    update = _open_update_serving(vehicle_id, package_id)
    if update is None:
        return  # served outside an open update (say a repeat after the outcome): no evidence
    now = timezone.now()
    served = dict(update.served_bytes)
    size = next(p["size"] for p in update.plan["packages"] if p["package_id"] == package_id)
    was_complete = covers(served.get(package_id, []), size)
    served[package_id] = add_range(served.get(package_id, []), first, first + count)
    update.served_bytes = served
    update.last_download_at = now
    if update.campaign_id:
        update.campaign  # noqa: B018
    _keep_alive(update, now)
    update.save(update_fields=["served_bytes", "last_download_at", "deadline_at", "updated_at"])
    if not was_complete and covers(served[package_id], size):
        record_event(
            action="ota.package.served",
            actor=f"vehicle:{update.vehicle.vin}",
            vehicle_vin=update.vehicle.vin,
            object_type="ota_update",
            object_id=update.pk,
            details={"package_id": package_id, "size": size, "attempt": update.attempts},
        )
