from __future__ import annotations

from django.contrib import admin

from ota.models import OtaUpdate


@admin.register(OtaUpdate)
class OtaUpdateAdmin(admin.ModelAdmin):
    list_display = ["id", "vehicle", "state", "created_at", "updated_at"]
    list_filter = ["state"]
    search_fields = ["vehicle__vin"]
    raw_id_fields = ["vehicle"]
