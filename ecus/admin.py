from __future__ import annotations

from django.contrib import admin

from core.admin import ReadOnlyModelAdmin
from ecus.models import Ecu, EcuType, RegistryEcu, RegistryZone, SoftwareChange


@admin.register(EcuType)
class EcuTypeAdmin(ReadOnlyModelAdmin):
    """The registry changes only by `manage.py import_registry`, which audits the import."""

    list_display = ["code", "name"]
    search_fields = ["code", "name"]


@admin.register(RegistryZone)
class RegistryZoneAdmin(ReadOnlyModelAdmin):
    list_display = ["gateway_id", "zone_number", "name", "doip_logical_address"]


@admin.register(RegistryEcu)
class RegistryEcuAdmin(ReadOnlyModelAdmin):
    list_display = [
        "ecu_id",
        "name",
        "ecu_type",
        "zone",
        "hardware_version",
        "default_sw_version",
        "update_priority",
    ]
    list_filter = ["zone", "ecu_type", "update_priority"]
    search_fields = ["ecu_id", "name"]
    list_select_related = ["ecu_type", "zone"]


@admin.register(Ecu)
class EcuAdmin(ReadOnlyModelAdmin):
    """Versions come from the vehicle's own reports; targets from campaigns."""

    list_display = [
        "vehicle",
        "ecu_id",
        "ecu_type",
        "zonal_gateway",
        "hardware_version",
        "sw_version",
        "target_sw_version",
    ]
    list_filter = ["ecu_type", "zonal_gateway__gateway_id", "hardware_version"]
    search_fields = ["vehicle__vin", "ecu_id", "serial_number"]
    list_select_related = ["vehicle", "ecu_type", "zonal_gateway"]
    raw_id_fields = ["vehicle", "zonal_gateway"]
    show_full_result_count = False


@admin.register(SoftwareChange)
class SoftwareChangeAdmin(ReadOnlyModelAdmin):
    list_display = [
        "vehicle",
        "ecu",
        "from_version",
        "to_version",
        "source",
        "update_id",
        "recorded_at",
    ]
    list_filter = ["source"]
    search_fields = ["vehicle__vin", "ecu__ecu_id"]
    list_select_related = ["vehicle", "ecu"]
    raw_id_fields = ["vehicle", "ecu"]
    show_full_result_count = False
