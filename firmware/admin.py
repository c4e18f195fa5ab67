from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin import ReadOnlyInline, ReadOnlyModelAdmin
from core.roles import Role, has_role
from ecus.models import EcuType
from firmware import services
from firmware.models import (
    Firmware,
    FirmwareCompatibility,
    FirmwareDependency,
    SigningKey,
    ZonePackage,
)


class FirmwareCompatibilityInline(ReadOnlyInline):
    model = FirmwareCompatibility
    extra = 0


class FirmwareDependencyInline(ReadOnlyInline):
    model = FirmwareDependency
    extra = 0
    exclude = ["min_version_key"]


@admin.register(Firmware)
class FirmwareAdmin(admin.ModelAdmin):
    """Releases are uploaded through the service (progress bar page), never edited or deleted."""

    list_display = ["ecu_type", "version", "status", "size", "short_sha256", "created_at"]
    list_filter = ["status", "ecu_type"]
    list_select_related = ["ecu_type"]
    search_fields = ["version", "sha256", "original_filename"]
    readonly_fields = [
        "ecu_type",
        "version",
        "status",
        "file",
        "original_filename",
        "size",
        "sha256",
        "created_at",
        "uploaded_by",
    ]
    inlines = [FirmwareCompatibilityInline, FirmwareDependencyInline]
    actions = ["deprecate_selected"]
    change_list_template = "admin/firmware/firmware/change_list.html"

    @admin.display(description="SHA-256")
    def short_sha256(self, obj: Firmware) -> str:
        return format_html("<code title='{}'>{}…</code>", obj.sha256, obj.sha256[:16])

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A release's compatibility and dependencies are part of what was uploaded and audited.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        upload = self.admin_site.admin_view(self.upload_view)
        return [path("upload/", upload, name="firmware_firmware_upload"), *super().get_urls()]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        # The model form would bypass hashing, size limits and duplicate checks.
        return HttpResponseRedirect(reverse("admin:firmware_firmware_upload"))

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload firmware",
            "opts": self.model._meta,
            "ecu_types": list(EcuType.objects.order_by("code").values_list("code", "name")),
            "upload_url": reverse("firmware-api:firmware-upload"),
            "can_upload": has_role(request.user, Role.FLEET_ENGINEER),
        }
        return TemplateResponse(request, "admin/firmware/firmware/upload.html", context)

    @admin.action(description="Deprecate selected firmware (kept, no longer offered)")
    def deprecate_selected(self, request: HttpRequest, queryset: QuerySet[Firmware]) -> None:
        count = 0
        for firmware in queryset:
            services.deprecate_firmware(firmware, actor=request.user)
            count += 1
        self.message_user(request, f"{count} firmware release(s) deprecated.", messages.SUCCESS)


@admin.register(ZonePackage)
class ZonePackageAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "zonal_gateway_id", "package_version", "size", "expires_at", "built_at"]
    list_filter = ["zonal_gateway_id"]
    search_fields = ["id", "sha256"]
    raw_id_fields = ["vehicles", "firmware"]
    show_full_result_count = False


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyModelAdmin):
    """The recorded keys; `manage.py signing_keys` generates, rotates and records them, audited."""

    list_display = ["name", "status", "mldsa_key_id", "ecdsa_key_id", "created_at"]
