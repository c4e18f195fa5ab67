from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from core.admin import ReadOnlyInline, ReadOnlyModelAdmin
from ecus.models import Ecu
from vehicles.models import VciSnapshot, Vehicle, ZonalGateway


class ZonalGatewayInline(ReadOnlyInline):
    # Gateways come from the ECU registry at registration, never by hand.
    model = ZonalGateway
    extra = 0
    fields = ["gateway_id", "zone_number", "name", "doip_address"]
    readonly_fields = fields

    @admin.display(description="DoIP address")
    def doip_address(self, obj: ZonalGateway) -> str:
        if obj.doip_logical_address is None:
            return ""
        return f"0x{obj.doip_logical_address:04X}"


class EcuInline(ReadOnlyInline):
    """ECUs ordered by zone, so the vehicle page reads gateway by gateway."""

    model = Ecu
    extra = 0
    fields = [
        "zonal_gateway",
        "ecu_id",
        "ecu_type",
        "hardware_version",
        "sw_version",
        "target_sw_version",
    ]
    readonly_fields = fields
    ordering = ["zonal_gateway__zone_number", "ecu_id"]
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("zonal_gateway", "ecu_type")


class TlsGroupFilter(admin.SimpleListFilter):
    """Key exchange groups seen, and "never connected" for the vehicles with none yet.

    The plain field filter would offer the empty group as a link with no text.
    """

    title = "key exchange group"
    parameter_name = "tls_group"
    NONE = "none"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        groups = (
            Vehicle.objects.exclude(tls_group="")
            .order_by("tls_group")
            .values_list("tls_group", flat=True)
            .distinct()
        )
        return [*((group, group) for group in groups), (self.NONE, "never connected")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Vehicle]) -> QuerySet[Vehicle]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(tls_group="" if value == self.NONE else value)


@admin.register(Vehicle)
class VehicleAdmin(ReadOnlyModelAdmin):
    """Vehicles register over mutual TLS and report their own state; the admin only shows them."""

    # Few, short columns, so the list fits a 1366 px screen beside its filters.
    list_display = ["vin", "model", "status", "is_online", "last_seen", "tls_group"]
    list_filter = ["status", "is_online", "model_name", "model_year", TlsGroupFilter]
    search_fields = ["vin", "vmg_id"]
    readonly_fields = [
        "tls_group",
        "tls_signature_algorithm",
        "tls_version",
        "tls_seen_at",
        "certificate_fingerprint",
        "certificate_serial",
        "last_seen_at",
        "created_at",
    ]
    inlines = [ZonalGatewayInline, EcuInline]

    @admin.display(description="model", ordering="model_name")
    def model(self, obj: Vehicle) -> str:
        return f"{obj.model_name} {obj.model_year}"

    @admin.display(description="last seen", ordering="last_seen_at")
    def last_seen(self, obj: Vehicle) -> str:
        if obj.last_seen_at is None:
            return "never"
        return timezone.localtime(obj.last_seen_at).strftime("%Y-%m-%d %H:%M")


@admin.register(ZonalGateway)
class ZonalGatewayAdmin(ReadOnlyModelAdmin):
    list_display = ["vehicle", "gateway_id", "zone_number", "name"]
    list_filter = ["gateway_id"]
    search_fields = ["vehicle__vin", "gateway_id"]
    list_select_related = ["vehicle"]
    raw_id_fields = ["vehicle"]


@admin.register(VciSnapshot)
class VciSnapshotAdmin(ReadOnlyModelAdmin):
    list_display = ["vehicle", "reported_at", "received_at", "trigger", "ecu_count"]
    search_fields = ["vehicle__vin", "device_id"]
    list_select_related = ["vehicle"]
    raw_id_fields = ["vehicle"]
    readonly_fields = ["payload", "changed_ecus"]
    show_full_result_count = False
