from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from console import dashboard
from core.api import DomainError
from core.roles import Role, has_role, user_roles
from diagnostics.models import DiagnosticRequest
from diagnostics.services.remote import send_diagnostic_request
from ota.campaigns import (
    TargetPreview,
    cancel_campaign,
    create_campaign,
    pause_campaign,
    preview_targets,
    resume_campaign,
    retry_failed,
    start_campaign,
)
from ota.choices import CampaignStatus
from ota.models import Campaign
from vehicles.choices import VehicleStatus
from vehicles.models import SavedFilter, Vehicle

logger = logging.getLogger(__name__)

View = Callable[..., HttpResponse]
# Every time the console reads is 24-hour UTC, as every time it shows.
DATETIME_INPUTS = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S")


def role_required(role: str) -> Callable[[View], View]:
    """Send anonymous users to the login page and refuse users without `role` (403)."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                raise PermissionDenied(f"the {role} role is required")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def _page(
    request: HttpRequest, template: str, partial: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """Render a page, or only its live region when the page's script asks for a refresh."""
    context = {
        **context,
        "roles": user_roles(request.user),
        "can_operate": has_role(request.user, Role.OPERATOR),
        "can_engineer": has_role(request.user, Role.FLEET_ENGINEER),
        "live_partial": partial,
    }
    if request.GET.get("fragment") == "live":
        return render(request, partial, context, status=status)
    return render(request, template, context, status=status)


def _field_message(exc: DomainError) -> str:
    field = getattr(exc, "field", None)
    return f"{field}: {exc}" if field else str(exc)


# -- fleet ------------------------------------------------------------------------------------


@require_GET
@role_required(Role.VIEWER)
def fleet(request: HttpRequest) -> HttpResponse:
    return _page(
        request,
        "console/fleet.html",
        "console/partials/fleet_live.html",
        dashboard.fleet_overview(),
    )


# -- campaigns --------------------------------------------------------------------------------

# Dashboard button -> workflow in ota.campaigns; the API and the admin call the same functions.
CAMPAIGN_ACTIONS: dict[str, Callable[..., Any]] = {
    "start": start_campaign,
    "pause": pause_campaign,
    "resume": resume_campaign,
    "cancel": cancel_campaign,
    "retry": retry_failed,
}
ACTION_DONE = {
    "start": "Campaign started: the worker offers the first wave at its next tick.",
    "pause": "Campaign paused: no new offers; installs under way finish.",
    "resume": "Campaign resumed.",
    "cancel": "Campaign cancelled.",
    "retry": "Failed vehicles queued again.",
}
# Which buttons make sense in which campaign status.
ACTIONS_BY_STATUS = {
    CampaignStatus.DRAFT: ["start", "cancel"],
    CampaignStatus.SCHEDULED: ["pause", "cancel"],
    CampaignStatus.RUNNING: ["pause", "cancel", "retry"],
    CampaignStatus.PAUSED: ["resume", "cancel", "retry"],
    CampaignStatus.COMPLETED: ["retry"],
}


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=120)
    firmware = forms.TypedMultipleChoiceField(
        coerce=int,
        label="Firmware releases",
        help_text="One release per ECU type.",
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    vehicles = forms.CharField(
        label="Vehicle VINs",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One VIN per line or separated by commas; empty targets every eligible vehicle.",
    )
    target_filter = forms.ModelChoiceField(
        queryset=SavedFilter.objects.order_by("name"),
        label="Saved filter",
        required=False,
        empty_label="none",
        help_text="Vehicles that match it, now or later, join the campaign.",
    )
    model_names = forms.CharField(
        label="Models",
        required=False,
        help_text="Comma-separated, e.g. Aurora, Borealis; empty means every model.",
    )
    model_years = forms.CharField(
        label="Model years", required=False, help_text="Comma-separated, e.g. 2025, 2026."
    )
    zones = forms.CharField(
        label="Zonal gateways",
        required=False,
        help_text="Only ECUs behind these gateways, e.g. ZGW_FRONT; empty means all.",
    )
    min_current_version = forms.CharField(
        label="Running at least", required=False, max_length=64, help_text="e.g. 1.0.0"
    )
    max_current_version = forms.CharField(
        label="Running below", required=False, max_length=64, help_text="e.g. 2.0.0"
    )
    waves = forms.CharField(
        label="Waves (% of vehicles, cumulative)",
        required=False,
        initial="1, 10, 50, 100",
        help_text="Each wave starts once the previous one succeeded.",
    )
    success_threshold = forms.FloatField(
        label="Success threshold (%)",
        required=False,
        min_value=0,
        max_value=100,
        initial=95,
        help_text="The next wave starts only when this share of a wave succeeded.",
    )
    failure_threshold = forms.FloatField(
        label="Failure threshold (%)",
        required=False,
        min_value=0,
        max_value=100,
        initial=10,
        help_text="The campaign pauses itself when more of a wave than this fails.",
    )
    start_at = forms.DateTimeField(
        label="Start at (UTC)",
        required=False,
        input_formats=[*DATETIME_INPUTS],
        widget=forms.TextInput(attrs={"placeholder": "2026-12-24 22:00", "inputmode": "numeric"}),
        help_text="24-hour UTC, YYYY-MM-DD HH:MM; empty starts when you press Start.",
    )
    maintenance_window_start = forms.TimeField(
        label="Maintenance window from (UTC)",
        required=False,
        input_formats=["%H:%M"],
        widget=forms.TextInput(attrs={"placeholder": "22:00", "inputmode": "numeric"}),
        help_text="24-hour HH:MM; offers go out only inside the window.",
    )
    maintenance_window_end = forms.TimeField(
        label="Maintenance window to (UTC)",
        required=False,
        input_formats=["%H:%M"],
        widget=forms.TextInput(attrs={"placeholder": "04:00", "inputmode": "numeric"}),
        help_text="May be past midnight, e.g. 22:00 to 04:00.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["firmware"].choices = dashboard.firmware_choices()

    def clean_vehicles(self) -> list[str]:
        raw = self.cleaned_data["vehicles"].replace(",", "\n")
        return [vin.strip().upper() for vin in raw.splitlines() if vin.strip()]

    def clean_model_names(self) -> list[str]:
        return _comma_list(self.cleaned_data["model_names"])

    def clean_zones(self) -> list[str]:
        return [zone.upper() for zone in _comma_list(self.cleaned_data["zones"])]

    def clean_model_years(self) -> list[int]:
        years = _comma_list(self.cleaned_data["model_years"])
        if not all(year.isascii() and year.isdigit() and len(year) == 4 for year in years):
            raise forms.ValidationError("four-digit years separated by commas, such as 2025")
        return [int(year) for year in years]

    def service_fields(self) -> dict[str, Any]:
        """The campaign service's keyword arguments for what the form holds."""
        data = self.cleaned_data
        fields: dict[str, Any] = {
            "name": data["name"],
            "target_vins": data["vehicles"],
            "target_filter": data["target_filter"],
            "target_model_names": data["model_names"],
            "target_model_years": data["model_years"],
            "target_zones": data["zones"],
            "min_current_version": data["min_current_version"].strip(),
            "max_current_version": data["max_current_version"].strip(),
            "start_at": data["start_at"],
            "maintenance_window_start": data["maintenance_window_start"],
            "maintenance_window_end": data["maintenance_window_end"],
        }
        for name in ("success_threshold", "failure_threshold"):
            if data[name] is not None:
                fields[name] = data[name] / 100
        if data["waves"]:
            fields["wave_percentages"] = data["waves"]
        return fields

    def clean_waves(self) -> list[float] | None:
        raw = self.cleaned_data["waves"].replace("%", "")
        if not raw.strip():
            return None
        try:
            return [float(part) for part in raw.replace(",", " ").split()]
        except ValueError:
            raise forms.ValidationError("numbers separated by commas, such as 10, 50, 100")


# Where the campaign service's field names appear on the form.
_CAMPAIGN_FORM_FIELDS = {
    "name": "name",
    "firmware_ids": "firmware",
    "target_vins": "vehicles",
    "wave_percentages": "waves",
    "target_filter": "target_filter",
    "target_model_names": "model_names",
    "target_model_years": "model_years",
    "target_zones": "zones",
    "min_current_version": "min_current_version",
    "max_current_version": "max_current_version",
    "success_threshold": "success_threshold",
    "failure_threshold": "failure_threshold",
    "start_at": "start_at",
    "maintenance_window_start": "maintenance_window_start",
    "maintenance_window_end": "maintenance_window_end",
}


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@require_GET
@role_required(Role.VIEWER)
def campaigns(request: HttpRequest) -> HttpResponse:
    return _campaign_list_page(request, CampaignForm())


def _campaign_list_page(
    request: HttpRequest,
    form: CampaignForm | None,
    status: int = 200,
    preview: TargetPreview | None = None,
) -> HttpResponse:
    return _page(
        request,
        "console/campaigns.html",
        "console/partials/campaign_list_live.html",
        {
            "campaigns": dashboard.campaign_list(),
            "create_form": form,
            "preview": preview,
        },
        status=status,
    )


@require_POST
@role_required(Role.OPERATOR)
def campaign_create(request: HttpRequest) -> HttpResponse:
    """Create a draft campaign, or with `preview` show what it would target and save nothing."""
    form = CampaignForm(request.POST)
    if form.is_valid():
        firmware_ids = form.cleaned_data["firmware"]
        try:
            if request.POST.get("preview"):
                preview = preview_targets(firmware_ids=firmware_ids, **form.service_fields())
                return _campaign_list_page(request, form, preview=preview)
            campaign = create_campaign(
                operator=request.user, firmware_ids=firmware_ids, **form.service_fields()
            )
        except DomainError as exc:
            form.add_error(_CAMPAIGN_FORM_FIELDS.get(exc.field or ""), exc.message)
        else:
            messages.success(request, f"Campaign “{campaign.name}” created as a draft.")
            return redirect("console:campaign", pk=campaign.pk)
    return _campaign_list_page(request, form, status=400)


def _get_campaign(pk: int) -> Campaign:
    return get_object_or_404(Campaign, pk=pk)


@require_GET
@role_required(Role.VIEWER)
def campaign_detail(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _get_campaign(pk)
    summary = dashboard.summarise_campaign(campaign)
    actions = ACTIONS_BY_STATUS.get(str(campaign.status), [])
    if not summary.failed:
        # Nothing failed or rolled back: the retry would requeue no one.
        actions = [action for action in actions if action != "retry"]
    return _page(
        request,
        "console/campaign_detail.html",
        "console/partials/campaign_live.html",
        {
            "campaign": campaign,
            "summary": summary,
            "rows": dashboard.campaign_vehicle_rows(campaign),
            "firmware": dashboard.campaign_firmware(campaign),
            "audit": dashboard.audit_trail(object_type="campaign", object_id=campaign.pk),
            "actions": actions,
        },
    )


@require_POST
@role_required(Role.OPERATOR)
def campaign_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    campaign = _get_campaign(pk)
    service = CAMPAIGN_ACTIONS.get(action)
    if service is None:
        raise Http404(f"no campaign action {action!r}")
    try:
        service(campaign, operator=request.user)
    except DomainError as exc:
        messages.error(request, f"Could not {action} the campaign: {_field_message(exc)}")
    else:
        messages.success(request, ACTION_DONE[action])
    return redirect("console:campaign", pk=pk)


# -- vehicles ---------------------------------------------------------------------------------


@require_GET
@role_required(Role.VIEWER)
def vehicles(request: HttpRequest) -> HttpResponse:
    page = dashboard.fleet_page(request)
    return _page(
        request,
        "console/vehicles.html",
        "console/partials/vehicle_list_live.html",
        {
            "page": page,
            "saved_filters": dashboard.saved_filters(),
            "ecu_types": dashboard.ecu_type_codes(),
            "statuses": VehicleStatus.choices,
            "live_query": urlencode({k: v for k, v in request.GET.items() if k != "fragment"}),
        },
        status=400 if page.error else 200,
    )


@require_GET
@role_required(Role.VIEWER)
def version_report(request: HttpRequest) -> HttpResponse:
    ecu = request.GET.get("ecu", "ECM").strip()[:16]
    context = dashboard.version_chart(ecu)
    context["ecu_types"] = dashboard.ecu_type_codes()
    return _page(
        request,
        "console/versions.html",
        "console/partials/versions_live.html",
        context,
        status=200 if context["report"] is not None else 404,
    )


@require_GET
@role_required(Role.VIEWER)
def vehicle_detail(request: HttpRequest, vin: str) -> HttpResponse:
    vehicle = get_object_or_404(Vehicle, vin=vin.upper())
    return _page(
        request,
        "console/vehicle_detail.html",
        "console/partials/vehicle_live.html",
        dashboard.vehicle_detail(vehicle),
    )


# -- diagnostics ------------------------------------------------------------------------------


class UdsRequestForm(forms.Form):
    vehicle = forms.CharField(max_length=17)
    target = forms.CharField(
        max_length=32, help_text="An ECU id (ECU_001) or a zonal gateway id (ZGW_FRONT)."
    )
    service = forms.TypedChoiceField(
        coerce=int,
        choices=[(s.sid, f"0x{s.sid_hex} {s.name}") for s in dashboard.UDS_SERVICES],
    )
    parameters = forms.RegexField(
        regex=r"^(?:\s*[0-9A-Fa-f]{2})*\s*\Z",
        required=False,
        max_length=256,
        error_messages={"invalid": "hex bytes only, such as F190"},
    )
    timeout = forms.IntegerField(min_value=1, max_value=120, initial=10, label="Timeout (s)")

    def clean_vehicle(self) -> Vehicle:
        vin = self.cleaned_data["vehicle"].strip().upper()
        vehicle = Vehicle.objects.filter(vin=vin).first()
        if vehicle is None:
            raise forms.ValidationError(f"no vehicle {vin}")
        return vehicle

    def clean_parameters(self) -> bytes:
        return bytes.fromhex("".join(self.cleaned_data["parameters"].split()))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "service" in cleaned and "parameters" in cleaned:
            try:
                cleaned["params"] = dashboard.uds_params_from_bytes(
                    cleaned["service"], cleaned["parameters"]
                )
            except DomainError as exc:
                self.add_error("parameters", exc.message)
        return cleaned


# Where the diagnostics service's field names appear on the console form.
_UDS_FORM_FIELDS = {
    "ecu_id": "target",
    "zone": "target",
    "service": "service",
    "timeout_ms": "timeout",
}


def _form_field_of(service_field: str | None) -> str | None:
    if not service_field:
        return None
    if service_field.startswith("params"):
        return "parameters"
    return _UDS_FORM_FIELDS.get(service_field)


def _may_send_diagnostics(user: Any) -> bool:
    return has_role(user, Role.OPERATOR) or has_role(user, Role.FLEET_ENGINEER)


def _diagnostics_context(request: HttpRequest, form: UdsRequestForm | None) -> dict[str, Any]:
    vin = (request.POST.get("vehicle") or request.GET.get("vehicle") or "").strip().upper()[:17]
    vehicle = Vehicle.objects.filter(vin=vin).first() if vin else None
    if form is None:
        form = UdsRequestForm(
            initial={"vehicle": vin, "timeout": 5, "service": 0x22, "parameters": "F190"}
        )
    return {
        "form": form,
        "vehicle": vehicle,
        "vehicle_choices": list(
            Vehicle.objects.order_by("vin").values_list("vin", "model_name")[:500]
        ),
        "zones": dashboard.ecus_by_zone(vehicle) if vehicle else [],
        "services": dashboard.UDS_SERVICES,
        "recent": dashboard.recent_diagnostic_requests(vehicle=vehicle),
        "can_send": _may_send_diagnostics(request.user),
    }


@require_GET
@role_required(Role.VIEWER)
def diagnostics_console(request: HttpRequest) -> HttpResponse:
    return _page(
        request,
        "console/diagnostics.html",
        "console/partials/diagnostics_recent_live.html",
        _diagnostics_context(request, None),
    )


@require_POST
@role_required(Role.VIEWER)
def diagnostics_send(request: HttpRequest) -> HttpResponse:
    if not _may_send_diagnostics(request.user):
        raise PermissionDenied("the operator or fleet_engineer role is required")
    form = UdsRequestForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        vehicle = data["vehicle"]
        target = data["target"].strip()
        is_zone = vehicle.zonal_gateways.filter(gateway_id=target).exists()
        try:
            diagnostic = send_diagnostic_request(
                vehicle=vehicle,
                service=data["service"],
                params=data["params"],
                ecu_id=None if is_zone else target,
                zone=target if is_zone else None,
                requested_by=request.user,
                timeout_ms=data["timeout"] * 1000,
            )
        except DomainError as exc:
            form.add_error(_form_field_of(exc.field), exc.message)
        else:
            return redirect("console:diagnostic-request", request_id=diagnostic.request_id)
    return _page(
        request,
        "console/diagnostics.html",
        "console/partials/diagnostics_recent_live.html",
        _diagnostics_context(request, form),
        status=400,
    )


@require_GET
@role_required(Role.VIEWER)
def diagnostic_request_detail(request: HttpRequest, request_id: str) -> HttpResponse:
    diagnostic = get_object_or_404(
        DiagnosticRequest.objects.select_related("vehicle", "zonal_gateway"), request_id=request_id
    )
    return _page(
        request,
        "console/diagnostic_request.html",
        "console/partials/diagnostic_request_live.html",
        {
            "diagnostic": diagnostic,
            "answers": dashboard.diagnostic_answers(diagnostic),
            "target": dashboard.diagnostic_target(diagnostic),
            "request_bytes": dashboard.spaced_hex(diagnostic.request_hex or ""),
            "service": dashboard.uds_service(diagnostic.service_id),
        },
    )


# -- PQC --------------------------------------------------------------------------------------


@require_GET
@role_required(Role.VIEWER)
def pqc(request: HttpRequest) -> HttpResponse:
    return _page(
        request, "console/pqc.html", "console/partials/pqc_live.html", dashboard.pqc_overview()
    )
