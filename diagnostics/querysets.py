from __future__ import annotations

from datetime import datetime

from django.db import models

from diagnostics.choices import CONTROL_FINAL_STATUSES, DiagnosticStatus


class TelemetrySampleQuerySet(models.QuerySet):
    def for_vehicle(self, vin: str) -> TelemetrySampleQuerySet:
        return self.filter(vehicle__vin=vin)

    def older_than(self, cutoff: datetime) -> TelemetrySampleQuerySet:
        return self.filter(received_at__lt=cutoff)


class ControlCommandQuerySet(models.QuerySet):
    def open(self) -> ControlCommandQuerySet:
        return self.exclude(status__in=CONTROL_FINAL_STATUSES)

    def overdue(self, now: datetime) -> ControlCommandQuerySet:
        return self.open().filter(deadline_at__lt=now)

    def for_display(self) -> ControlCommandQuerySet:
        return self.select_related("vehicle", "issued_by")


class DiagnosticRequestQuerySet(models.QuerySet):
    def open(self) -> DiagnosticRequestQuerySet:
        return self.filter(status__in=[DiagnosticStatus.PENDING, DiagnosticStatus.SENT])

    def overdue(self, now: datetime) -> DiagnosticRequestQuerySet:
        return self.open().filter(deadline_at__lt=now)

    def for_display(self) -> DiagnosticRequestQuerySet:
        # diagnostics.models imports this module: its models are imported when first needed.
        from diagnostics.models import DiagnosticResult

        results = models.Prefetch(
            "results",
            queryset=DiagnosticResult.objects.select_related("ecu").order_by("ecu__ecu_id"),
        )
        return self.select_related("vehicle", "zonal_gateway", "requested_by").prefetch_related(
            results
        )
