from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from core.admin import ReadOnlyInline, ReadOnlyModelAdmin
from core.api import DomainError
from ota import campaigns
from ota.models import Campaign, CampaignFirmware, CampaignWave, OtaUpdate, UpdateReport


class CampaignFirmwareInline(admin.TabularInline):
    model = CampaignFirmware
    extra = 0
    raw_id_fields = ["firmware"]

    def _editable(self, obj: Campaign | None) -> bool:
        return obj is None or obj.is_editable()

    def has_add_permission(self, request: HttpRequest, obj: Campaign | None = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Campaign | None = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Campaign | None = None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)


class CampaignWaveInline(ReadOnlyInline):
    """Waves are made from the wave percentages when the campaign starts."""

    model = CampaignWave
    extra = 0
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


def _firmware_ids(formsets: list[BaseInlineFormSet]) -> list[int] | None:
    """The releases the firmware inline lists, or None when it was left as it was."""
    for formset in formsets:
        if formset.model is not CampaignFirmware:
            continue
        if not formset.has_changed():
            return None
        return [
            form.cleaned_data["firmware"].pk
            for form in formset.forms
            if form.cleaned_data.get("firmware") and not form.cleaned_data.get("DELETE")
        ]
    return None


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

    # Add, change and delete go through the campaign services like the API and the dashboard:
    # they audit the change and refuse to edit a started campaign. The services own their
    # (durable) transactions, so the admin views must not wrap them in one of their own.

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        if obj is not None and not obj.is_editable():
            return [*self.readonly_fields, *campaigns.EDITABLE_FIELDS]
        return self.readonly_fields

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Deleting several campaigns at once would stop at the first refusal half done.
        return {
            name: action
            for name, action in super().get_actions(request).items()
            if name != "delete_selected"
        }

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return self._changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:
            messages.error(request, f"Not saved: {exc.message}")
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return self._delete_view(request, object_id, extra_context)
        except DomainError as exc:
            messages.error(request, f"Not deleted: {exc.message}")
            return HttpResponseRedirect(request.get_full_path())

    def save_model(
        self, request: HttpRequest, obj: Campaign, form: ModelForm, change: bool
    ) -> None:
        """Saved with its firmware in `save_related`, in one service call."""

    def save_related(
        self,
        request: HttpRequest,
        form: ModelForm,
        formsets: list[BaseInlineFormSet],
        change: bool,
    ) -> None:
        campaign = form.instance
        firmware_ids = _firmware_ids(formsets)
        if change:
            fields = {
                name: form.cleaned_data[name]
                for name in form.changed_data
                if name in campaigns.EDITABLE_FIELDS
            }
            saved = campaigns.update_campaign(
                campaign, operator=request.user, firmware_ids=firmware_ids, **fields
            )
        else:
            fields = {
                name: value
                for name, value in form.cleaned_data.items()
                if name in campaigns.EDITABLE_FIELDS
            }
            saved = campaigns.create_campaign(
                operator=request.user, firmware_ids=firmware_ids or [], **fields
            )
        for field in Campaign._meta.concrete_fields:
            setattr(campaign, field.attname, getattr(saved, field.attname))
        for formset in formsets:
            # The service saved the firmware list; the admin's change message reads these.
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def delete_model(self, request: HttpRequest, obj: Campaign) -> None:
        campaigns.delete_campaign(obj, operator=request.user)

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


class UpdateReportInline(ReadOnlyInline):
    model = UpdateReport
    extra = 0
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
class OtaUpdateAdmin(ReadOnlyModelAdmin):
    """States change only through vehicle reports and services, never by hand."""

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
