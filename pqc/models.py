from __future__ import annotations

from django.db import models

from pqc.choices import CertificateAction


class CertificateEvent(models.Model):
    """Append-only audit row for every fleet PKI change."""

    action = models.CharField(max_length=32, choices=CertificateAction.choices)
    actor = models.CharField(max_length=150)
    serial = models.CharField(max_length=64, blank=True)
    subject = models.CharField(max_length=200, blank=True)
    family = models.CharField(max_length=16, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["serial"], name="pqc_certificateevent_serial")]

    def __str__(self) -> str:
        return f"{self.action} {self.subject or self.serial}"


class RevokedCertificate(models.Model):
    """A certificate on a CRL; listeners refuse it at the handshake."""

    serial = models.CharField(max_length=64, unique=True)
    subject = models.CharField(max_length=200)
    family = models.CharField(max_length=16)
    reason = models.CharField(max_length=200, blank=True)
    revoked_by = models.CharField(max_length=150)
    revoked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-revoked_at"]

    def __str__(self) -> str:
        return f"{self.serial} ({self.subject})"
