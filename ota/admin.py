from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.api import DomainError
from ota import campaigns
from ota.models import Campaign, CampaignFirmware, CampaignWave, OtaUpdate, UpdateReport


class CampaignFirmwareInline(admin.TabularInline):
    model = CampaignFirmware
    extra = 0
    raw_id_fields = ["firmware"]


class CampaignWaveInline(admin.TabularInline):
    model = CampaignWave
    extra = 0
    can_delete = False
    fields = ["index", "percentage", "status", "accepted_by_operator", "started_at", "completed_at"]
    readonly_fields = fields


def _run(
    request: HttpRequest, queryset: QuerySet[Campaign], service: Callable[..., Any], verb: str
) -> None:
    """Apply one campaign service per selected row; the same services the API calls."""
    done = 0
    for campaign in queryset:
        try:
            service(campaign, operator=request.user)
            done += 1
        except DomainError as exc:
            messages.error(request, f"{campaign}: {exc.message}")
    if done:
        messages.success(request, f"{verb} {done} campaign(s)")


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "status",
        "current_wave",
        "pause_reason",
        "created_at",
        "started_at",
    ]
    list_filter = ["status"]
    search_fields = ["name"]
    readonly_fields = [
        "status",
        "current_wave",
        "pause_reason",
        "auto_paused",
        "created_by",
        "started_at",
        "finished_at",
    ]
    inlines = [CampaignFirmwareInline, CampaignWaveInline]
    actions = ["start", "pause", "resume", "cancel", "retry_failed"]

    @admin.action(description="Start selected campaigns")
    def start(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        _run(request, queryset, campaigns.start_campaign, "started")

    @admin.action(description="Pause selected campaigns")
    def pause(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        _run(request, queryset, campaigns.pause_campaign, "paused")

    @admin.action(description="Resume selected campaigns")
    def resume(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        _run(request, queryset, campaigns.resume_campaign, "resumed")

    @admin.action(description="Cancel selected campaigns")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        _run(request, queryset, campaigns.cancel_campaign, "cancelled")

    @admin.action(description="Retry failed vehicles of selected campaigns")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        _run(request, queryset, campaigns.retry_failed, "queued failed vehicles again in")


class UpdateReportInline(admin.TabularInline):
    model = UpdateReport
    extra = 0
    can_delete = False
    fields = [
        "received_at",
        "source",
        "report_key",
        "sequence",
        "state_before",
        "state_after",
        "outcome",
        "reason",
    ]
    readonly_fields = fields


@admin.register(OtaUpdate)
class OtaUpdateAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "vehicle",
        "campaign",
        "wave",
        "state",
        "attempts",
        "progress_percent",
        "updated_at",
    ]
    list_filter = ["state"]
    search_fields = ["vehicle__vin"]
    list_select_related = ["vehicle", "campaign", "wave"]
    raw_id_fields = ["vehicle", "campaign", "wave"]
    readonly_fields = ["plan", "last_sequence", "last_report_at", "offered_at", "finished_at"]
    show_full_result_count = False
    inlines = [UpdateReportInline]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # States change only through reports and services, never by hand.
        return False
