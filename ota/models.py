from __future__ import annotations

from django.db import models

from ota.choices import UpdateState


class OtaUpdate(models.Model):
    """One vehicle's update: what it was offered and how far it got."""

    vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.PROTECT,
        related_name="ota_updates",
    )
    state = models.CharField(
        max_length=20,
        choices=UpdateState.choices,
        default=UpdateState.OFFERED,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["vehicle", "state"], name="ota_otaupdate_vehicle_state")]

    def __str__(self) -> str:
        return f"update {self.pk} of {self.vehicle_id} ({self.state})"
