from __future__ import annotations

from django.contrib import admin

from firmware.models import Firmware, FirmwareCompatibility, FirmwareDependency


class FirmwareCompatibilityInline(admin.TabularInline):
    model = FirmwareCompatibility
    extra = 1


class FirmwareDependencyInline(admin.TabularInline):
    model = FirmwareDependency
    extra = 0
    exclude = ["min_version_key"]


@admin.register(Firmware)
class FirmwareAdmin(admin.ModelAdmin):
    list_display = ["ecu_type", "version", "status", "size", "sha256", "created_at"]
    list_filter = ["status", "ecu_type"]
    search_fields = ["version", "sha256", "original_filename"]
    readonly_fields = ["sha256", "size", "version_key", "created_at", "uploaded_by"]
    inlines = [FirmwareCompatibilityInline, FirmwareDependencyInline]
