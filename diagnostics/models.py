from __future__ import annotations

import uuid

from django.db import models

from diagnostics.choices import DiagnosticStatus


class DiagnosticRequest(models.Model):
    """A remote UDS request to one ECU or to every ECU behind a zonal gateway."""

    request_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.PROTECT,
        related_name="diagnostic_requests",
    )
    service_id = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=16,
        choices=DiagnosticStatus.choices,
        default=DiagnosticStatus.PENDING,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return str(self.request_id)
