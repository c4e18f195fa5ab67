"""The campaign engine: what the worker does on each tick. Every step is a database row change.

A tick activates due campaigns (fan-out), adds vehicles that joined since, offers due updates,
fails vehicles that went silent, and judges the current wave. Each campaign is processed under
its row lock (SKIP LOCKED on PostgreSQL), so two workers never process the same campaign at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from core.audit import record_event
from ota.campaigns import (
    FAN_OUT_BATCH,
    _shuffled,
    eligible_vehicles,
    publish_campaign_progress,
    wave_sizes,
)
from ota.choices import CampaignStatus, UpdateState, WaveStatus
from ota.models import ACTIVE_STATES, Campaign, CampaignWave, OtaUpdate
from ota.services import (
    WORKER_ACTOR,
    finish_update,
    lock_vehicles,
    mark_in_flight,
    publish_update,
)
from vehicles.models import Vehicle

logger = logging.getLogger(__name__)

# Upper bounds per tick, so one tick stays short whatever the fleet size.
OFFER_BATCH = 1000
EXPIRE_BATCH = 500
# Updates being worked on at once, fleet-wide. Each one costs the server an update check,
# downloads and reports within seconds of its offer: offering a thousand in one tick made a
# thousand vehicles check at once and time out together. New offers fill what frees up.
MAX_IN_FLIGHT = 200
# An update with no progress for this long stops counting against MAX_IN_FLIGHT, so silent
# vehicles do not hold the pace back until their timeout.
IN_FLIGHT_STALE = timedelta(minutes=2)
WORKING_STATES = tuple(s for s in ACTIVE_STATES if s != UpdateState.AWAITING_REBOOT)


@dataclass
class TickSummary:
    fanned_out: dict[int, int] = field(default_factory=dict)
    joined: int = 0
    offered: int = 0
    expired: int = 0
    advanced: list[int] = field(default_factory=list)
    paused: list[int] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)

    def changed(self) -> bool:
        return bool(
            self.fanned_out
            or self.joined
            or self.offered
            or self.expired
            or self.advanced
            or self.paused
            or self.completed
        )


def run_tick(*, now: datetime | None = None) -> TickSummary:
    """One pass of the campaign worker over every campaign with work to do."""
    now = now or timezone.now()
    summary = TickSummary()
    due = Campaign.objects.filter(status=CampaignStatus.SCHEDULED, start_at__lte=now)
    for campaign_id in due.values_list("pk", flat=True):
        count = fan_out_campaign(campaign_id, now=now)
        if count is not None:
            summary.fanned_out[campaign_id] = count
    summary.expired = expire_silent_updates(now=now)
    running = Campaign.objects.filter(status=CampaignStatus.RUNNING)
    for campaign_id in running.values_list("pk", flat=True):
        _process_campaign(campaign_id, now, summary)
    return summary


@transaction.atomic
def fan_out_campaign(campaign_id: int, *, now: datetime) -> int | None:
    """Create the queued update records of every targeted vehicle, spread over the waves.

    Returns the number of records, or None when another worker holds the campaign.
    """
    campaign = (
        Campaign.objects.select_for_update(skip_locked=True)
        .filter(pk=campaign_id, status=CampaignStatus.SCHEDULED)
        .first()
    )
    if campaign is None:
        return None
    waves = list(campaign.waves.order_by("index"))
    vehicle_ids = _shuffled(
        campaign.pk, list(eligible_vehicles(campaign).values_list("pk", flat=True))
    )
    records, start = [], 0
    for wave, size in zip(
        waves, wave_sizes(len(vehicle_ids), [w.percentage for w in waves]), strict=True
    ):
        records.extend(
            OtaUpdate(
                vehicle_id=vehicle_id,
                campaign=campaign,
                wave=wave,
                state=UpdateState.QUEUED,
                next_action_at=now,
            )
            for vehicle_id in vehicle_ids[start : start + size]
        )
        start += size
    OtaUpdate.objects.bulk_create(records, batch_size=FAN_OUT_BATCH)
    CampaignWave.objects.filter(pk=waves[0].pk).update(status=WaveStatus.ACTIVE, started_at=now)
    campaign.status = CampaignStatus.RUNNING
    campaign.started_at = now
    campaign.current_wave = 0
    campaign.save(update_fields=["status", "started_at", "current_wave", "updated_at"])
    record_event(
        action="campaign.fanned_out",
        actor=WORKER_ACTOR,
        object_type="campaign",
        object_id=campaign.pk,
        details={"vehicles": len(records), "waves": [w.percentage for w in waves]},
    )
    publish_campaign_progress(campaign.pk)
    return len(records)


def _process_campaign(campaign_id: int, now: datetime, summary: TickSummary) -> None:
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(skip_locked=True)
            .filter(pk=campaign_id, status=CampaignStatus.RUNNING)
            .first()
        )
        if campaign is None:
            return
        joined = include_new_vehicles(campaign, now=now)
        offered = offer_due_updates(campaign, now=now)
        verdict = evaluate_wave(campaign, now=now)
        summary.joined += joined
        summary.offered += offered
        if verdict == "advanced":
            summary.advanced.append(campaign.pk)
        elif verdict == "paused":
            summary.paused.append(campaign.pk)
        elif verdict == "completed":
            summary.completed.append(campaign.pk)
        if joined or offered or verdict:
            publish_campaign_progress(campaign.pk)


def include_new_vehicles(campaign: Campaign, *, now: datetime) -> int:
    """Vehicles that matched the targeting after the fan-out join the current wave."""
    known = OtaUpdate.objects.filter(campaign=campaign).values("vehicle_id")
    among_vins = None
    if campaign.target_vins:
        # This runs every tick, and the eligibility query would bind every VIN the campaign
        # names (10,000 of them: a fifth of the server's CPU in a fleet-wide campaign). Only
        # the named VINs without a record yet can join.
        if known.count() >= len(set(campaign.target_vins)):
            return 0
        have = set(known.values_list("vehicle__vin", flat=True))
        among_vins = [vin for vin in campaign.target_vins if vin not in have]
        if not among_vins:
            return 0
    vehicle_ids = list(
        eligible_vehicles(campaign, among_vins=among_vins)
        .exclude(pk__in=known)
        .values_list("pk", flat=True)[:FAN_OUT_BATCH]
    )
    if not vehicle_ids:
        return 0
    wave = campaign.waves.get(index=campaign.current_wave)
    OtaUpdate.objects.bulk_create(
        [
            OtaUpdate(
                vehicle_id=vehicle_id,
                campaign=campaign,
                wave=wave,
                state=UpdateState.QUEUED,
                next_action_at=now,
            )
            for vehicle_id in vehicle_ids
        ],
        batch_size=FAN_OUT_BATCH,
    )
    return len(vehicle_ids)


def offer_due_updates(campaign: Campaign, *, now: datetime) -> int:
    """Offer queued vehicles of reached waves, and failed ones whose retry backoff has passed."""
    if not campaign.in_maintenance_window(now):
        return 0
    # Semi-joins rather than correlated subqueries: one index pass, not one per row.
    busy = (
        OtaUpdate.objects.filter(state__in=ACTIVE_STATES)
        .exclude(campaign=campaign)
        .values("vehicle_id")
    )
    due = list(
        OtaUpdate.objects.filter(
            campaign=campaign,
            wave__index__lte=campaign.current_wave,
            next_action_at__lte=now,
            state__in=[UpdateState.QUEUED, UpdateState.FAILED, UpdateState.ROLLED_BACK],
        )
        # One update at a time per vehicle: a vehicle busy with another campaign waits.
        .exclude(vehicle_id__in=busy)
        .order_by("next_action_at", "pk")
        .values_list("pk", "state", "vehicle__vin", "vehicle_id")[: offer_budget(now)]
    )
    # The lock order of ota.services: these vehicles' rows before their update rows.
    lock_vehicles([row[3] for row in due])
    deadline = now + timedelta(seconds=campaign.timeout_seconds())
    offered = 0
    for state in {row[1] for row in due}:
        ids = [row[0] for row in due if row[1] == state]
        # Conditional on the state we read: a concurrent cancel or report wins.
        offered += OtaUpdate.objects.filter(pk__in=ids, state=state).update(
            state=UpdateState.OFFERED,
            attempts=F("attempts") + 1,
            offered_at=now,
            deadline_at=deadline,
            next_action_at=None,
            finished_at=None,
            plan={},
            vmg_state=None,
            progress_percent=0,
            current_step="",
            error="",
            last_sequence=None,
            served_bytes={},
            last_download_at=None,
            updated_at=now,
        )
    vins = {row[0]: row[2] for row in due}
    offers = [
        (update, vins[update.pk])
        for update in OtaUpdate.objects.filter(pk__in=list(vins), state=UpdateState.OFFERED)
    ]
    for update, vin in offers:
        publish_update(update, vin)
    mark_in_flight(offers)
    return offered


def offer_budget(now: datetime) -> int:
    """How many more updates may be offered now (at most OFFER_BATCH per tick)."""
    working = OtaUpdate.objects.filter(
        state__in=WORKING_STATES, updated_at__gte=now - IN_FLIGHT_STALE
    ).count()
    return max(0, min(OFFER_BATCH, MAX_IN_FLIGHT - working))


def expire_silent_updates(*, now: datetime) -> int:
    """Fail updates whose vehicle stayed silent past the timeout; they count against the wave."""
    overdue = list(
        OtaUpdate.objects.filter(state__in=ACTIVE_STATES, deadline_at__lte=now)
        .order_by("deadline_at")
        .values_list("pk", "vehicle_id")[:EXPIRE_BATCH]
    )
    expired = 0
    for pk, vehicle_id in overdue:
        with transaction.atomic():
            # The lock order of ota.services: the vehicle first. A vehicle busy with a report
            # or a download is alive; it is looked at again on the next tick.
            locked = (
                Vehicle.objects.select_for_update(skip_locked=True)
                .filter(pk=vehicle_id)
                .values_list("pk", flat=True)
                .first()
            )
            if locked is None:
                continue
            update = (
                OtaUpdate.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, state__in=ACTIVE_STATES, deadline_at__lte=now)
                .select_related("vehicle")
                .first()
            )
            if update is None:
                continue  # a report arrived meanwhile, or another worker has it
            heard = max(
                (t for t in (update.last_report_at, update.last_download_at) if t),
                default=update.offered_at or now,
            )
            silent = int((now - heard).total_seconds())
            finish_update(
                update,
                update.vehicle.vin,
                state=UpdateState.FAILED,
                error=f"timeout: no sign of life for {silent} s (state was {update.state})",
                actor=WORKER_ACTOR,
                now=now,
            )
            expired += 1
    return expired


def _wave_counts(campaign: Campaign, wave: CampaignWave) -> dict[str, int]:
    final_failure = Q(
        state__in=[UpdateState.FAILED, UpdateState.ROLLED_BACK], next_action_at__isnull=True
    )
    return OtaUpdate.objects.filter(campaign=campaign, wave=wave).aggregate(
        total=Count("id"),
        succeeded=Count("id", filter=Q(state=UpdateState.SUCCEEDED)),
        cancelled=Count("id", filter=Q(state=UpdateState.CANCELLED)),
        failed=Count("id", filter=final_failure),
    )


def evaluate_wave(campaign: Campaign, *, now: datetime) -> str:
    """Pause past the failure threshold; advance a finished wave whose success ratio is met.

    Failures count once they are final (no automatic retry left). Returns "advanced",
    "paused", "completed" or "" when nothing changed.
    """
    wave = campaign.waves.get(index=campaign.current_wave)
    counts = _wave_counts(campaign, wave)
    total, failed = counts["total"], counts["failed"]
    done = counts["succeeded"] + counts["cancelled"] + failed == total
    if not wave.accepted_by_operator and total and failed / total > campaign.failure_threshold:
        return _auto_pause(
            campaign,
            f"wave {wave.index + 1}: {failed} of {total} vehicles failed "
            f"({failed / total:.0%} > {campaign.failure_threshold:.0%})",
        )
    if not done:
        return ""
    considered = total - counts["cancelled"]
    ratio = counts["succeeded"] / considered if considered else 1.0
    if not wave.accepted_by_operator and ratio < campaign.success_threshold:
        return _auto_pause(
            campaign,
            f"wave {wave.index + 1}: success ratio {ratio:.0%} < {campaign.success_threshold:.0%}",
        )
    return _advance(campaign, wave, now=now, ratio=ratio)


def _auto_pause(campaign: Campaign, reason: str) -> str:
    campaign.status = CampaignStatus.PAUSED
    campaign.auto_paused = True
    campaign.pause_reason = reason[:300]
    campaign.save(update_fields=["status", "auto_paused", "pause_reason", "updated_at"])
    record_event(
        action="campaign.auto_paused",
        actor=WORKER_ACTOR,
        object_type="campaign",
        object_id=campaign.pk,
        details={"reason": reason, "wave": campaign.current_wave},
    )
    logger.warning("campaign %s paused: %s", campaign.pk, reason)
    return "paused"


def _advance(campaign: Campaign, wave: CampaignWave, *, now: datetime, ratio: float) -> str:
    CampaignWave.objects.filter(pk=wave.pk).update(status=WaveStatus.COMPLETED, completed_at=now)
    following = campaign.waves.filter(index=wave.index + 1).first()
    if following is None:
        campaign.status = CampaignStatus.COMPLETED
        campaign.finished_at = now
        campaign.save(update_fields=["status", "finished_at", "updated_at"])
        action, verdict = "campaign.completed", "completed"
    else:
        CampaignWave.objects.filter(pk=following.pk).update(
            status=WaveStatus.ACTIVE, started_at=now
        )
        campaign.current_wave = following.index
        campaign.save(update_fields=["current_wave", "updated_at"])
        action, verdict = "campaign.wave_advanced", "advanced"
    record_event(
        action=action,
        actor=WORKER_ACTOR,
        object_type="campaign",
        object_id=campaign.pk,
        details={"wave": wave.index, "success_ratio": round(ratio, 4)},
    )
    return verdict
