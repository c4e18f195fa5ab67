from __future__ import annotations

from django.contrib import admin

from core.admin import ReadOnlyInline, ReadOnlyModelAdmin
from diagnostics.models import (
    ControlCommand,
    DiagnosticRequest,
    DiagnosticResult,
    InboundDrop,
    TelemetryLatest,
    TelemetrySample,
)


class DiagnosticResultInline(ReadOnlyInline):
    model = DiagnosticResult
    extra = 0
    raw_id_fields = ["ecu"]
    readonly_fields = [
        "ecu",
        "outcome",
        "response_hex",
        "decoded",
        "nrc",
        "nrc_name",
        "received_at",
    ]


@admin.register(DiagnosticRequest)
class DiagnosticRequestAdmin(ReadOnlyModelAdmin):
    """Requests are sent and answered through the diagnostics services (dashboard, API, MQTT)."""

    list_display = ["request_id", "vehicle", "scope", "service_id", "status", "created_at"]
    list_filter = ["status", "scope", "service_id"]
    list_select_related = ["vehicle"]
    search_fields = ["vehicle__vin", "request_id"]
    raw_id_fields = ["vehicle", "zonal_gateway", "requested_by"]
    readonly_fields = ["request_id", "request_hex", "created_at", "deadline_at", "completed_at"]
    inlines = [DiagnosticResultInline]


@admin.register(ControlCommand)
class ControlCommandAdmin(ReadOnlyModelAdmin):
    list_display = ["command_id", "vehicle", "command", "status", "created_at", "finished_at"]
    list_filter = ["status", "command"]
    list_select_related = ["vehicle"]
    search_fields = ["vehicle__vin", "command_id", "batch_id"]
    raw_id_fields = ["vehicle", "issued_by"]


@admin.register(TelemetryLatest)
class TelemetryLatestAdmin(ReadOnlyModelAdmin):
    list_display = ["vehicle", "seq", "reported_at", "received_at"]
    list_select_related = ["vehicle"]
    search_fields = ["vehicle__vin"]
    raw_id_fields = ["vehicle"]


@admin.register(TelemetrySample)
class TelemetrySampleAdmin(ReadOnlyModelAdmin):
    list_display = ["vehicle", "seq", "reported_at", "received_at"]
    list_select_related = ["vehicle"]
    search_fields = ["vehicle__vin"]
    raw_id_fields = ["vehicle"]
    # Telemetry-sized table: counting every row on each page load is too slow.
    show_full_result_count = False


@admin.register(InboundDrop)
class InboundDropAdmin(ReadOnlyModelAdmin):
    list_display = ["reason", "count", "last_topic", "last_at"]
    readonly_fields = ["reason", "count", "last_topic", "last_at"]
