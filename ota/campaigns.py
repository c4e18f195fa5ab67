"""Campaign workflows: create, target, start, pause, resume, cancel, retry failed vehicles."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from core.api import ConflictError, DomainError
from core.audit import record_event
from core.events import FLEET_GROUP, campaign_group, publish_event
from ecus.models import Ecu, RegistryZone
from ecus.versions import InvalidVersion, SemVer
from firmware.choices import FirmwareStatus
from firmware.models import Firmware
from ota.choices import CampaignStatus, UpdateState, WaveStatus
from ota.models import Campaign, CampaignFirmware, CampaignWave, OtaUpdate
from ota.services import settle_vehicles
from uptane.services import unreleased_firmware
from vehicles.choices import VehicleStatus
from vehicles.filters import filter_vehicles
from vehicles.models import Vehicle
from vehicles.validators import VIN_PATTERN

DEFAULT_WAVES = (1.0, 10.0, 50.0, 100.0)
# Rows per INSERT when fanning out; keeps statements well under parameter limits.
FAN_OUT_BATCH = 2000

EDITABLE_FIELDS = (
    "name",
    "description",
    "target_model_names",
    "target_model_years",
    "target_zones",
    "target_vins",
    "min_current_version",
    "max_current_version",
    "wave_percentages",
    "success_threshold",
    "failure_threshold",
    "start_at",
    "maintenance_window_start",
    "maintenance_window_end",
    "max_attempts",
    "retry_backoff_seconds",
    "vehicle_timeout_seconds",
    "target_filter",
)


# ---------------------------------------------------------------------------------------------
# Validation and targeting.


def _validate_waves(percentages: Sequence[float]) -> list[float]:
    waves = [float(p) for p in percentages]
    if not waves:
        raise DomainError("at least one wave is required", field="wave_percentages")
    if any(p <= 0 or p > 100 for p in waves):
        raise DomainError("each wave is a percentage in (0, 100]", field="wave_percentages")
    if any(b <= a for a, b in zip(waves, waves[1:], strict=False)):
        raise DomainError("waves are cumulative and strictly increasing", field="wave_percentages")
    if waves[-1] != 100:
        raise DomainError("the last wave must reach 100 %", field="wave_percentages")
    return waves


# VINs looked up per query when checking targets: under SQLite's bound on query parameters.
VIN_CHECK_BATCH = 5000


def _validate_target_vins(vins: Sequence[str]) -> None:
    """Each target is a registered vehicle's VIN: a typo would otherwise target nothing."""
    for vin in vins:
        if not isinstance(vin, str) or not VIN_PATTERN.fullmatch(vin):
            raise DomainError(
                f"{vin!r} is not a VIN (17 capital letters and digits, no I, O or Q)",
                field="target_vins",
            )
    wanted = list(dict.fromkeys(vins))
    for start in range(0, len(wanted), VIN_CHECK_BATCH):
        batch = wanted[start : start + VIN_CHECK_BATCH]
        known = set(Vehicle.objects.filter(vin__in=batch).values_list("vin", flat=True))
        unknown = [vin for vin in batch if vin not in known]
        if unknown:
            raise DomainError(f"no vehicle {unknown[0]} is registered", field="target_vins")


def _validate_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Rules that span fields or need the database; shapes were checked by the serializer."""
    if "wave_percentages" in fields:
        fields["wave_percentages"] = _validate_waves(fields["wave_percentages"])
    for name in ("success_threshold", "failure_threshold"):
        if name in fields and not 0 <= fields[name] <= 1:
            raise DomainError("a ratio between 0 and 1", field=name)
    for name in ("min_current_version", "max_current_version"):
        if fields.get(name):
            try:
                fields[name] = str(SemVer.coerce(fields[name]))
            except InvalidVersion as exc:
                raise DomainError(str(exc), field=name)
    low, high = fields.get("min_current_version"), fields.get("max_current_version")
    if low and high and SemVer.parse(low) >= SemVer.parse(high):
        raise DomainError("must be above min_current_version", field="max_current_version")
    zones = fields.get("target_zones") or []
    if zones:
        known = set(
            RegistryZone.objects.filter(gateway_id__in=zones).values_list("gateway_id", flat=True)
        )
        unknown = sorted(set(zones) - known)
        if unknown:
            raise DomainError(f"unknown zonal gateway {unknown[0]}", field="target_zones")
    _validate_target_vins(fields.get("target_vins") or [])
    window = (fields.get("maintenance_window_start"), fields.get("maintenance_window_end"))
    if (window[0] is None) != (window[1] is None):
        raise DomainError("give both ends of the window or neither", field="maintenance_window_end")
    if "max_attempts" in fields and fields["max_attempts"] < 1:
        raise DomainError("at least 1", field="max_attempts")
    return fields


def _validate_firmware(firmware_ids: Sequence[int]) -> list[Firmware]:
    if not firmware_ids:
        raise DomainError(
            "a campaign rolls out at least one firmware release", field="firmware_ids"
        )
    found = Firmware.objects.in_bulk(set(firmware_ids))
    missing = sorted(set(firmware_ids) - set(found))
    if missing:
        raise DomainError(f"no firmware {missing[0]}", field="firmware_ids")
    releases = list(found.values())
    for release in releases:
        if release.status != FirmwareStatus.AVAILABLE:
            raise DomainError(f"firmware {release.pk} is {release.status}", field="firmware_ids")
    types = [release.ecu_type_id for release in releases]
    if len(types) != len(set(types)):
        raise DomainError("one release per ECU type", field="firmware_ids")
    unsigned = unreleased_firmware(releases)
    if unsigned:
        raise DomainError(
            f"firmware {unsigned[0].pk} ({unsigned[0]}) is not released: the image repository's "
            "offline-signed targets do not name it (python -m uptane.release sign)",
            field="firmware_ids",
        )
    return releases


def eligible_vehicles(
    campaign: Campaign, *, among_vins: Sequence[str] | None = None
) -> QuerySet[Vehicle]:
    """Vehicles the targeting selects that have an ECU the campaign's firmware would update.

    `among_vins`, a part of the campaign's `target_vins`, narrows the VINs looked at.
    """
    releases = list(campaign.firmware.prefetch_related("compatibilities"))
    return _eligible(campaign, releases, among_vins=among_vins)


@dataclass(frozen=True)
class TargetPreview:
    """What a campaign would target if it were created now: how many, and the first by VIN."""

    count: int
    vins: list[str]

    @property
    def more(self) -> int:
        return self.count - len(self.vins)


def preview_targets(
    *, firmware_ids: Sequence[int], sample: int = 20, **fields: Any
) -> TargetPreview:
    """The vehicles a campaign with these fields would target, without saving anything."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise DomainError("not a campaign field", field=sorted(unknown)[0])
    fields = _validate_fields(dict(fields))
    releases = _validate_firmware(firmware_ids)
    with_hardware = Firmware.objects.filter(pk__in=[r.pk for r in releases])
    vehicles = _eligible(
        Campaign(**fields), list(with_hardware.prefetch_related("compatibilities"))
    )
    return TargetPreview(
        count=vehicles.count(),
        vins=list(vehicles.order_by("vin").values_list("vin", flat=True)[:sample]),
    )


def _eligible(
    campaign: Campaign, releases: list[Firmware], *, among_vins: Sequence[str] | None = None
) -> QuerySet[Vehicle]:
    match = Q(pk__in=[])
    for release in releases:
        hardware = [c.hardware_version for c in release.compatibilities.all()]
        match |= Q(
            ecu_type_id=release.ecu_type_id,
            hardware_version__in=hardware,
            sw_version_key__lt=release.version_key,
        )
    ecus = Ecu.objects.filter(match)
    if campaign.target_zones:
        ecus = ecus.filter(zonal_gateway__gateway_id__in=campaign.target_zones)
    if campaign.min_current_version:
        ecus = ecus.filter(sw_version_key__gte=SemVer.parse(campaign.min_current_version).sort_key)
    if campaign.max_current_version:
        ecus = ecus.filter(sw_version_key__lt=SemVer.parse(campaign.max_current_version).sort_key)
    # A semi-join, not a correlated EXISTS: one pass over the ECU type index, whereas SQLite
    # runs a correlated subquery once per vehicle over that same index (minutes at 10k vehicles).
    vehicles = Vehicle.objects.exclude(status=VehicleStatus.DECOMMISSIONED).filter(
        pk__in=ecus.values("vehicle_id")
    )
    if campaign.target_model_names:
        vehicles = vehicles.filter(model_name__in=campaign.target_model_names)
    if campaign.target_model_years:
        vehicles = vehicles.filter(model_year__in=campaign.target_model_years)
    if campaign.target_vins:
        vehicles = vehicles.filter(
            vin__in=campaign.target_vins if among_vins is None else among_vins
        )
    if campaign.target_filter is not None:
        # A saved filter is evaluated at every tick: vehicles that match it later join.
        matching = filter_vehicles(campaign.target_filter.query)
        vehicles = vehicles.filter(pk__in=matching.values("pk"))
    return vehicles


def wave_sizes(total: int, percentages: Sequence[float]) -> list[int]:
    """How many vehicles each wave gets; a non-empty fleet always puts one in the first wave."""
    cumulative = [min(total, math.ceil(total * p / 100)) for p in percentages]
    if total and cumulative[0] == 0:
        cumulative[0] = 1
    sizes, previous = [], 0
    for count in cumulative:
        count = max(count, previous)
        sizes.append(count - previous)
        previous = count
    return sizes


def _shuffled(campaign_id: int, vehicle_ids: list[int]) -> list[int]:
    """A stable per-campaign shuffle, so the first wave is not always the oldest vehicles."""

    def key(vehicle_id: int) -> bytes:
        return hashlib.sha256(f"{campaign_id}:{vehicle_id}".encode()).digest()

    return sorted(vehicle_ids, key=key)


# ---------------------------------------------------------------------------------------------
# Progress.


def campaign_counts(campaign_id: int) -> dict[str, int]:
    rows = (
        OtaUpdate.objects.filter(campaign_id=campaign_id)
        .values("state")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = {state: 0 for state in UpdateState.values}
    counts.update({row["state"]: row["n"] for row in rows})
    return counts


def publish_campaign_progress(campaign_id: int) -> None:
    """Tell dashboards where a campaign stands (after commit)."""
    campaign = Campaign.objects.only("status", "current_wave", "pause_reason").get(pk=campaign_id)
    event = {
        "kind": "campaign_progress",
        "campaign_id": campaign_id,
        "status": campaign.status,
        "current_wave": campaign.current_wave,
        "pause_reason": campaign.pause_reason,
        "counts": campaign_counts(campaign_id),
    }
    publish_event(campaign_group(campaign_id), event)
    publish_event(FLEET_GROUP, event)


def _audit(campaign: Campaign, action: str, actor: Any, **details: Any) -> None:
    record_event(
        action=f"campaign.{action}",
        actor=actor,
        object_type="campaign",
        object_id=campaign.pk,
        details={"name": campaign.name, "status": campaign.status, **details},
    )


# ---------------------------------------------------------------------------------------------
# Operator workflows.


@transaction.atomic(durable=True)
def create_campaign(*, operator: Any, firmware_ids: Sequence[int], **fields: Any) -> Campaign:
    """Create a draft campaign rolling out `firmware_ids` to the vehicles `fields` target."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise DomainError("not a campaign field", field=sorted(unknown)[0])
    fields.setdefault("wave_percentages", list(DEFAULT_WAVES))
    fields = _validate_fields(fields)
    releases = _validate_firmware(firmware_ids)
    campaign = Campaign.objects.create(created_by=_user_or_none(operator), **fields)
    CampaignFirmware.objects.bulk_create(
        CampaignFirmware(campaign=campaign, firmware=release) for release in releases
    )
    _audit(
        campaign,
        "created",
        operator,
        firmware={str(r.ecu_type_id): r.version for r in releases},
        waves=campaign.wave_percentages,
    )
    return campaign


@transaction.atomic(durable=True)
def update_campaign(
    campaign: Campaign, *, operator: Any, firmware_ids: Sequence[int] | None = None, **fields: Any
) -> Campaign:
    """Change a draft campaign; a started one is immutable (its records depend on it)."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if not campaign.is_editable():
        raise ConflictError(f"a {campaign.status} campaign cannot be edited", field="status")
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise DomainError("not a campaign field", field=sorted(unknown)[0])
    merged = {name: getattr(campaign, name) for name in EDITABLE_FIELDS} | fields
    _validate_fields(merged)
    for name in fields:
        setattr(campaign, name, merged[name])
    campaign.save()
    if firmware_ids is not None:
        releases = _validate_firmware(firmware_ids)
        campaign.campaign_firmware.all().delete()
        CampaignFirmware.objects.bulk_create(
            CampaignFirmware(campaign=campaign, firmware=release) for release in releases
        )
    _audit(campaign, "updated", operator, fields=sorted(fields))
    return campaign


@transaction.atomic(durable=True)
def delete_campaign(campaign: Campaign, *, operator: Any) -> None:
    """Delete a draft campaign (nothing was offered yet)."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if not campaign.is_editable():
        raise ConflictError(
            f"a {campaign.status} campaign cannot be deleted; cancel it", field="status"
        )
    _audit(campaign, "deleted", operator)
    campaign.delete()


def _locked(campaign: Campaign, allowed: Sequence[str], verb: str) -> Campaign:
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if locked.status not in allowed:
        raise ConflictError(f"a {locked.status} campaign cannot be {verb}", field="status")
    return locked


@transaction.atomic(durable=True)
def start_campaign(campaign: Campaign, *, operator: Any, now: datetime | None = None) -> Campaign:
    """Schedule a draft campaign; the worker fans it out at `start_at` (or its next tick)."""
    campaign = _locked(campaign, [CampaignStatus.DRAFT], "started")
    now = now or timezone.now()
    CampaignWave.objects.bulk_create(
        CampaignWave(campaign=campaign, index=index, percentage=percentage)
        for index, percentage in enumerate(campaign.wave_percentages)
    )
    campaign.status = CampaignStatus.SCHEDULED
    campaign.start_at = campaign.start_at or now
    campaign.save(update_fields=["status", "start_at", "updated_at"])
    _audit(campaign, "started", operator, start_at=campaign.start_at.isoformat())
    publish_campaign_progress(campaign.pk)
    return campaign


@transaction.atomic(durable=True)
def pause_campaign(campaign: Campaign, *, operator: Any, reason: str = "") -> Campaign:
    """Stop new offers; vehicles already installing finish (an install cannot be stopped safely)."""
    campaign = _locked(campaign, [CampaignStatus.RUNNING, CampaignStatus.SCHEDULED], "paused")
    campaign.status = CampaignStatus.PAUSED
    campaign.auto_paused = False
    campaign.pause_reason = (reason or "paused by an operator")[:300]
    campaign.save(update_fields=["status", "auto_paused", "pause_reason", "updated_at"])
    _audit(campaign, "paused", operator, reason=campaign.pause_reason)
    publish_campaign_progress(campaign.pk)
    return campaign


@transaction.atomic(durable=True)
def resume_campaign(campaign: Campaign, *, operator: Any) -> Campaign:
    """Resume offers; after an automatic pause the operator accepts the current wave's results."""
    campaign = _locked(campaign, [CampaignStatus.PAUSED], "resumed")
    if campaign.auto_paused:
        campaign.waves.filter(index=campaign.current_wave).update(accepted_by_operator=True)
    campaign.status = CampaignStatus.RUNNING if campaign.started_at else CampaignStatus.SCHEDULED
    reason, campaign.pause_reason, campaign.auto_paused = campaign.pause_reason, "", False
    campaign.save(update_fields=["status", "pause_reason", "auto_paused", "updated_at"])
    _audit(campaign, "resumed", operator, previous_pause_reason=reason)
    publish_campaign_progress(campaign.pk)
    return campaign


CANCELLABLE_UPDATES = (
    UpdateState.QUEUED,
    UpdateState.OFFERED,
    UpdateState.DOWNLOADING,
    UpdateState.DOWNLOADED,
)


@transaction.atomic(durable=True)
def cancel_campaign(campaign: Campaign, *, operator: Any) -> Campaign:
    """End a campaign: updates not yet verifying are cancelled; installs already under way finish."""
    campaign = _locked(
        campaign,
        [
            CampaignStatus.DRAFT,
            CampaignStatus.SCHEDULED,
            CampaignStatus.RUNNING,
            CampaignStatus.PAUSED,
        ],
        "cancelled",
    )
    now = timezone.now()
    # Vehicles that were told of an offer: they hear of the cancellation and stop updating.
    told = dict(
        OtaUpdate.objects.filter(
            campaign=campaign, state__in=CANCELLABLE_UPDATES, offered_at__isnull=False
        )
        .exclude(state=UpdateState.QUEUED)
        .values_list("vehicle_id", "vehicle__vin")
    )
    cancelled = OtaUpdate.objects.filter(campaign=campaign, state__in=CANCELLABLE_UPDATES).update(
        state=UpdateState.CANCELLED,
        finished_at=now,
        deadline_at=None,
        next_action_at=None,
        updated_at=now,
    )
    # Failed vehicles waiting for an automatic retry get none.
    OtaUpdate.objects.filter(campaign=campaign, next_action_at__isnull=False).update(
        next_action_at=None
    )
    campaign.status = CampaignStatus.CANCELLED
    campaign.finished_at = now
    campaign.save(update_fields=["status", "finished_at", "updated_at"])
    settle_vehicles(told)
    _audit(campaign, "cancelled", operator, updates_cancelled=cancelled)
    publish_campaign_progress(campaign.pk)
    return campaign


@transaction.atomic(durable=True)
def retry_failed(campaign: Campaign, *, operator: Any) -> int:
    """Queue the campaign's failed and rolled-back vehicles again, with fresh attempts."""
    campaign = _locked(
        campaign,
        [CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.COMPLETED],
        "retried",
    )
    now = timezone.now()
    count = OtaUpdate.objects.filter(
        campaign=campaign, state__in=[UpdateState.FAILED, UpdateState.ROLLED_BACK]
    ).update(
        state=UpdateState.QUEUED, attempts=0, next_action_at=now, finished_at=None, updated_at=now
    )
    if count and campaign.status == CampaignStatus.COMPLETED:
        campaign.status = CampaignStatus.RUNNING
        campaign.finished_at = None
        campaign.save(update_fields=["status", "finished_at", "updated_at"])
        campaign.waves.filter(index=campaign.current_wave).update(
            status=WaveStatus.ACTIVE, completed_at=None
        )
    _audit(campaign, "retried", operator, updates_requeued=count)
    publish_campaign_progress(campaign.pk)
    return count


def _user_or_none(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) is not None else None
