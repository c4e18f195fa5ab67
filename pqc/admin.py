from __future__ import annotations

from django.contrib import admin

from core.admin import ReadOnlyModelAdmin
from pqc.models import CertificateEvent, RevokedCertificate


@admin.register(CertificateEvent)
class CertificateEventAdmin(ReadOnlyModelAdmin):
    list_display = ["created_at", "action", "subject", "family", "serial", "actor"]
    list_filter = ["action", "family"]
    search_fields = ["serial", "subject"]
    readonly_fields = ["action", "actor", "serial", "subject", "family", "details", "created_at"]
    show_full_result_count = False


@admin.register(RevokedCertificate)
class RevokedCertificateAdmin(ReadOnlyModelAdmin):
    """Revocation must also update the CRL: use `manage.py pqc_pki revoke`."""

    list_display = ["serial", "subject", "family", "reason", "revoked_by", "revoked_at"]
    search_fields = ["serial", "subject"]
    readonly_fields = ["serial", "subject", "family", "reason", "revoked_by", "revoked_at"]
