from __future__ import annotations

from django.contrib import admin

from diagnostics.models import DiagnosticRequest


@admin.register(DiagnosticRequest)
class DiagnosticRequestAdmin(admin.ModelAdmin):
    list_display = ["request_id", "vehicle", "service_id", "status", "created_at"]
    list_filter = ["status", "service_id"]
    search_fields = ["vehicle__vin", "request_id"]
    raw_id_fields = ["vehicle"]
