from __future__ import annotations

from django.conf import settings
from django.db import models

from vehicles.choices import VehicleStatus
from vehicles.querysets import VehicleQuerySet
from vehicles.validators import validate_vin


class Vehicle(models.Model):
    """A vehicle in the fleet, identified by its VIN and talking to us through its VMG."""

    vin = models.CharField(max_length=17, unique=True, validators=[validate_vin])
    model_name = models.CharField(max_length=100)
    model_year = models.PositiveSmallIntegerField()
    vmg_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=20,
        choices=VehicleStatus.choices,
        default=VehicleStatus.REGISTERED,
    )
    is_online = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # The crypto posture of the latest mutual-TLS connection, recorded by the TLS layer.
    tls_group = models.CharField(max_length=64, blank=True)
    tls_signature_algorithm = models.CharField(max_length=64, blank=True)
    tls_version = models.CharField(max_length=16, blank=True)
    tls_seen_at = models.DateTimeField(null=True, blank=True)
    certificate_fingerprint = models.CharField(max_length=64, blank=True)
    certificate_serial = models.CharField(max_length=64, blank=True)
    # Expiry of the certificate the vehicle is bound to, for the fleet list's expiry window.
    certificate_not_after = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VehicleQuerySet.as_manager()

    class Meta:
        ordering = ["vin"]
        indexes = [
            models.Index(fields=["model_name", "model_year"], name="vehicles_vehicle_model_year"),
            models.Index(fields=["status"], name="vehicles_vehicle_status"),
            # The fleet list sorts by these (keyset pages: the key, then the primary key).
            models.Index(fields=["model_name", "id"], name="vehicles_vehicle_model_id"),
            models.Index(fields=["created_at", "id"], name="vehicles_vehicle_created_id"),
            models.Index(fields=["certificate_not_after"], name="vehicles_vehicle_cert_expiry"),
        ]

    def __str__(self) -> str:
        return self.vin


class ZonalGateway(models.Model):
    """A zonal gateway of one vehicle; ECUs behind it are reached over DoIP/UDS."""

    vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.CASCADE,
        related_name="zonal_gateways",
    )
    gateway_id = models.CharField(max_length=32)
    zone_number = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=64)
    doip_logical_address = models.PositiveIntegerField()

    class Meta:
        ordering = ["vehicle", "zone_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["vehicle", "gateway_id"],
                name="vehicles_zonalgateway_unique_gateway",
            ),
            models.CheckConstraint(
                condition=models.Q(doip_logical_address__lte=0xFFFF),
                name="vehicles_zonalgateway_doip_address_u16",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gateway_id} of {self.vehicle.vin}"


class VciSnapshot(models.Model):
    """One vehicle configuration report (VCI) as the VMG sent it; the history is kept."""

    vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.CASCADE,
        related_name="vci_snapshots",
    )
    device_id = models.CharField(max_length=64, blank=True)
    trigger = models.CharField(max_length=32, blank=True)
    reported_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    ecu_count = models.PositiveSmallIntegerField()
    # ECU ids whose reported software differed from what we had on record.
    changed_ecus = models.JSONField(default=list, blank=True)
    payload = models.JSONField()

    class Meta:
        verbose_name = "VCI snapshot"
        ordering = ["vehicle", "-received_at", "-id"]
        indexes = [
            models.Index(fields=["vehicle", "-received_at"], name="vehicles_vci_latest"),
        ]

    def __str__(self) -> str:
        return f"VCI of {self.vehicle.vin} at {self.reported_at:%Y-%m-%d %H:%M:%S}"


class SavedFilter(models.Model):
    """A named fleet-list query (a dynamic group): the vehicles it selects change with the fleet."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # The query parameters of GET /api/v1/vehicles, as {"parameter": "value"}.
    query = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="saved_vehicle_filters",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
