from __future__ import annotations

from django.contrib import admin

from pqc.models import CertificateEvent, RevokedCertificate


@admin.register(CertificateEvent)
class CertificateEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "action", "subject", "family", "serial", "actor"]
    list_filter = ["action", "family"]
    search_fields = ["serial", "subject"]
    readonly_fields = ["action", "actor", "serial", "subject", "family", "details", "created_at"]
    show_full_result_count = False

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(RevokedCertificate)
class RevokedCertificateAdmin(admin.ModelAdmin):
    list_display = ["serial", "subject", "family", "reason", "revoked_by", "revoked_at"]
    search_fields = ["serial", "subject"]
    readonly_fields = ["serial", "subject", "family", "reason", "revoked_by", "revoked_at"]

    def has_add_permission(self, request: object) -> bool:
        # Revocation must also update the CRL: use `manage.py pqc_pki revoke`.
        return False
