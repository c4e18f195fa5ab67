from __future__ import annotations

from django.conf import settings
from django.db import models

from ota.choices import CampaignStatus, UpdateState, WaveStatus
from ota.served_ranges import covers

# Record states in which a vehicle is working on an update and owes us reports.
ACTIVE_STATES = (
    UpdateState.OFFERED,
    UpdateState.DOWNLOADING,
    UpdateState.DOWNLOADED,
    UpdateState.VERIFYING,
    UpdateState.INSTALLING,
    UpdateState.AWAITING_REBOOT,
)
TERMINAL_STATES = (
    UpdateState.SUCCEEDED,
    UpdateState.FAILED,
    UpdateState.ROLLED_BACK,
    UpdateState.CANCELLED,
)


class Campaign(models.Model):
    """A rollout of firmware releases to the vehicles its targeting selects, in phased waves."""

    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=16,
        choices=CampaignStatus.choices,
        default=CampaignStatus.DRAFT,
    )
    firmware = models.ManyToManyField(
        "firmware.Firmware",
        through="ota.CampaignFirmware",
        related_name="campaigns",
    )
    # Targeting: an empty list means "no restriction" on that attribute.
    target_model_names = models.JSONField(default=list, blank=True)
    target_model_years = models.JSONField(default=list, blank=True)
    target_zones = models.JSONField(default=list, blank=True)
    target_vins = models.JSONField(default=list, blank=True)
    # A saved fleet-list query; the vehicles matching it when the worker looks are targeted.
    target_filter = models.ForeignKey(
        "vehicles.SavedFilter",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
    )
    # Current version range of the targeted ECUs: min inclusive, max exclusive.
    min_current_version = models.CharField(max_length=64, blank=True)
    max_current_version = models.CharField(max_length=64, blank=True)
    wave_percentages = models.JSONField(default=list)
    success_threshold = models.FloatField(default=0.95)
    failure_threshold = models.FloatField(default=0.10)
    current_wave = models.PositiveSmallIntegerField(default=0)
    start_at = models.DateTimeField(null=True, blank=True)
    # Offers go out only inside this daily UTC window (wrapping past midnight is allowed).
    maintenance_window_start = models.TimeField(null=True, blank=True)
    maintenance_window_end = models.TimeField(null=True, blank=True)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    retry_backoff_seconds = models.PositiveIntegerField(default=300)
    vehicle_timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    pause_reason = models.CharField(max_length=300, blank=True)
    # Paused by the worker on a threshold (not by an operator); resuming then accepts the wave.
    auto_paused = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="ota_campaigns",
        null=True,
        blank=True,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The campaign worker scans running and scheduled campaigns on every tick.
            models.Index(fields=["status", "start_at"], name="ota_campaign_status_start"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    def is_editable(self) -> bool:
        return self.status == CampaignStatus.DRAFT

    def timeout_seconds(self) -> int:
        return self.vehicle_timeout_seconds or settings.OTA_VEHICLE_TIMEOUT_SECONDS

    def in_maintenance_window(self, moment) -> bool:  # noqa: ANN001
        """True when offers may go out at `moment` (an aware UTC datetime)."""
        start, end = self.maintenance_window_start, self.maintenance_window_end
        if start is None or end is None:
            return True
        now = moment.time()
        if start <= end:
            return start <= now < end
        return now >= start or now < end


class CampaignFirmware(models.Model):
    """A firmware release a campaign rolls out (one per ECU type)."""

    campaign = models.ForeignKey(
        "ota.Campaign",
        on_delete=models.CASCADE,
        related_name="campaign_firmware",
    )
    firmware = models.ForeignKey(
        "firmware.Firmware",
        on_delete=models.PROTECT,
        related_name="campaign_links",
    )

    class Meta:
        verbose_name = "campaign firmware release"
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "firmware"],
                name="ota_campaignfirmware_unique",
            ),
        ]


class CampaignWave(models.Model):
    """One phase of a campaign: its vehicles are offered once the previous wave succeeded."""

    campaign = models.ForeignKey(
        "ota.Campaign",
        on_delete=models.CASCADE,
        related_name="waves",
    )
    index = models.PositiveSmallIntegerField()
    percentage = models.FloatField()
    status = models.CharField(
        max_length=16,
        choices=WaveStatus.choices,
        default=WaveStatus.PENDING,
    )
    # Set when an operator resumes a paused wave: its thresholds no longer pause it.
    accepted_by_operator = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["campaign", "index"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "index"], name="ota_campaignwave_unique"),
        ]

    def __str__(self) -> str:
        return f"campaign {self.campaign_id} wave {self.index} ({self.percentage} %)"


class OtaUpdate(models.Model):
    """One vehicle's update: what it was offered and how far it truthfully got."""

    vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.PROTECT,
        related_name="ota_updates",
    )
    campaign = models.ForeignKey(
        "ota.Campaign",
        on_delete=models.PROTECT,
        related_name="updates",
        null=True,
        blank=True,
    )
    wave = models.ForeignKey(
        "ota.CampaignWave",
        on_delete=models.PROTECT,
        related_name="updates",
        null=True,
        blank=True,
    )
    state = models.CharField(
        max_length=20,
        choices=UpdateState.choices,
        default=UpdateState.OFFERED,
    )
    vmg_state = models.PositiveSmallIntegerField(null=True, blank=True)
    progress_percent = models.PositiveSmallIntegerField(default=0)
    current_step = models.CharField(max_length=200, blank=True)
    error = models.CharField(max_length=500, blank=True)
    # {"items": [...], "packages": [...], "refused": "..."}; computed at the first update check.
    plan = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_action_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    last_sequence = models.BigIntegerField(null=True, blank=True)
    last_report_at = models.DateTimeField(null=True, blank=True)
    # Evidence that the vehicle got its packages from us this attempt: the byte ranges of each
    # package served to it, {package_id: [[start, end], ...]}, kept by the download path.
    served_bytes = models.JSONField(default=dict, blank=True)
    last_download_at = models.DateTimeField(null=True, blank=True)
    offered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "OTA update"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "vehicle"],
                name="ota_otaupdate_one_per_campaign",
            ),
        ]
        indexes = [
            models.Index(fields=["vehicle", "state"], name="ota_otaupdate_vehicle_state"),
            # The campaign worker: due offers and retries, and overdue vehicles.
            models.Index(fields=["state", "next_action_at"], name="ota_otaupdate_due"),
            models.Index(fields=["state", "deadline_at"], name="ota_otaupdate_deadline"),
            models.Index(fields=["campaign", "wave", "state"], name="ota_otaupdate_wave_state"),
        ]

    def __str__(self) -> str:
        return f"update {self.pk} of {self.vehicle.vin} ({self.get_state_display()})"

    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    def target_versions(self) -> dict[str, str]:
        return {item["ecu_id"]: item["to_version"] for item in self.plan.get("items", [])}

    def source_versions(self) -> dict[str, str]:
        return {item["ecu_id"]: item["from_version"] for item in self.plan.get("items", [])}

    def packages_served(self) -> bool:
        """True once every package of the plan was served to the vehicle in full."""
        packages = self.plan.get("packages") or []
        return bool(packages) and all(
            covers(self.served_bytes.get(package["package_id"], []), package["size"])
            for package in packages
        )


class UpdateReport(models.Model):
    """A status report as received, kept whether it moved the record, was stale or was refused."""

    update = models.ForeignKey(
        "ota.OtaUpdate",
        on_delete=models.CASCADE,
        related_name="reports",
    )
    report_key = models.CharField(max_length=80, blank=True)
    sequence = models.BigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=16)
    payload = models.JSONField(default=dict)
    state_before = models.CharField(max_length=20)
    state_after = models.CharField(max_length=20)
    # "applied", "stale" (older than what we know) or "refused" (invalid transition, HTTP 409).
    outcome = models.CharField(max_length=16)
    reason = models.CharField(max_length=300, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["update", "received_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["update", "report_key"],
                condition=~models.Q(report_key=""),
                name="ota_updatereport_idempotent",
            ),
        ]

    def __str__(self) -> str:
        return f"report {self.report_key or self.pk} for update {self.update_id}: {self.outcome}"
