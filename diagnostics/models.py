from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from diagnostics.choices import (
    ControlCommandName,
    ControlStatus,
    DiagnosticScope,
    DiagnosticStatus,
    EcuOutcome,
)
from diagnostics.querysets import (
    ControlCommandQuerySet,
    DiagnosticRequestQuerySet,
    TelemetrySampleQuerySet,
)


class TelemetryLatest(models.Model):
    """The newest value of every telemetry signal a vehicle has reported."""

    vehicle = models.OneToOneField(
        "vehicles.Vehicle",
        on_delete=models.CASCADE,
        related_name="telemetry_latest",
    )
    values = models.JSONField(default=dict)
    seq = models.BigIntegerField(default=0)
    reported_at = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        verbose_name = "latest telemetry"
        verbose_name_plural = "latest telemetry"

    def __str__(self) -> str:
        return f"latest telemetry of {self.vehicle.vin}"


class TelemetrySample(models.Model):
    """One telemetry message as the vehicle sent it; `prune_telemetry` bounds the history."""

    vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.CASCADE,
        related_name="telemetry_samples",
    )
    seq = models.BigIntegerField()
    reported_at = models.DateTimeField()
    received_at = models.DateTimeField()
    values = models.JSONField(default=dict)

    objects = TelemetrySampleQuerySet.as_manager()

    class Meta:
        ordering = ["-reported_at", "-seq"]
        constraints = [
            # QoS 1 delivers at least once: a redelivered message must not add a second row.
            models.UniqueConstraint(
                fields=["vehicle", "reported_at", "seq"],
                name="diagnostics_telemetrysample_unique_message",
            ),
        ]
        indexes = [
            models.Index(
                fields=["vehicle", "-reported_at"],
                name="diagnostics_telemetry_recent",
            ),
            # prune_telemetry deletes by age.
            models.Index(fields=["received_at"], name="diagnostics_telemetry_age"),
        ]

    def __str__(self) -> str:
        return f"{self.vehicle_id} #{self.seq}"


class ControlCommand(models.Model):
    """A command sent to one vehicle over MQTT and what the vehicle answered."""

    command_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.PROTECT,
        related_name="control_commands",
    )
    command = models.CharField(max_length=32, choices=ControlCommandName.choices)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16,
        choices=ControlStatus.choices,
        default=ControlStatus.SENT,
    )
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="control_commands",
        null=True,
        blank=True,
    )
    batch_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    deadline_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    result = models.JSONField(default=dict, blank=True)

    objects = ControlCommandQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The timeout sweep of the bridge looks for open commands past their deadline.
            models.Index(fields=["status", "deadline_at"], name="diagnostics_control_due"),
        ]

    def __str__(self) -> str:
        return f"{self.command} to {self.vehicle_id} ({self.status})"


class DiagnosticRequest(models.Model):
    """A remote UDS request to one ECU or to every ECU behind a zonal gateway."""

    request_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.PROTECT,
        related_name="diagnostic_requests",
    )
    scope = models.CharField(
        max_length=8,
        choices=DiagnosticScope.choices,
        default=DiagnosticScope.ECU,
    )
    zonal_gateway = models.ForeignKey(
        "vehicles.ZonalGateway",
        on_delete=models.PROTECT,
        related_name="diagnostic_requests",
        null=True,
        blank=True,
    )
    service_id = models.PositiveSmallIntegerField()
    parameters = models.JSONField(default=dict, blank=True)
    request_hex = models.CharField(max_length=8200, blank=True)
    timeout_ms = models.PositiveIntegerField(default=5000)
    status = models.CharField(
        max_length=16,
        choices=DiagnosticStatus.choices,
        default=DiagnosticStatus.PENDING,
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="diagnostic_requests",
        null=True,
        blank=True,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = DiagnosticRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The timeout sweep of the bridge looks for open requests past their deadline.
            models.Index(fields=["status", "deadline_at"], name="diagnostics_request_due"),
        ]

    def __str__(self) -> str:
        return str(self.request_id)

    @property
    def duration_ms(self) -> int | None:
        if self.completed_at is None or self.created_at is None:
            return None
        return int((self.completed_at - self.created_at).total_seconds() * 1000)


class DiagnosticResult(models.Model):
    """One ECU's answer to a diagnostic request: decoded positive, negative with its NRC, or none."""

    request = models.ForeignKey(
        "diagnostics.DiagnosticRequest",
        on_delete=models.CASCADE,
        related_name="results",
    )
    ecu = models.ForeignKey(
        "ecus.Ecu",
        on_delete=models.PROTECT,
        related_name="diagnostic_results",
    )
    outcome = models.CharField(
        max_length=16,
        choices=EcuOutcome.choices,
        default=EcuOutcome.PENDING,
    )
    response_hex = models.CharField(max_length=8200, blank=True)
    decoded = models.JSONField(default=dict, blank=True)
    nrc = models.PositiveSmallIntegerField(null=True, blank=True)
    nrc_name = models.CharField(max_length=80, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["request", "ecu__ecu_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "ecu"],
                name="diagnostics_diagnosticresult_unique_ecu",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id}/{self.ecu_id}: {self.outcome}"


class InboundDrop(models.Model):
    """How many inbound MQTT messages were dropped for each reason, for the dashboard."""

    reason = models.CharField(max_length=32, unique=True)
    count = models.BigIntegerField(default=0)
    last_topic = models.CharField(max_length=256, blank=True)
    last_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["reason"]

    def __str__(self) -> str:
        return f"{self.reason}: {self.count}"
