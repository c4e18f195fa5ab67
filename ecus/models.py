from __future__ import annotations

from django.db import models

from ecus.choices import UpdatePriority
from ecus.versions import VERSION_KEY_MAX_LENGTH, VERSION_MAX_LENGTH, SemVer


class EcuType(models.Model):
    """A kind of ECU (engine control, transmission, body...) that firmware is built for."""

    code = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)

    class Meta:
        verbose_name = "ECU type"
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class RegistryZone(models.Model):
    """A zonal gateway of the fleet's reference architecture, from the ECU registry."""

    gateway_id = models.CharField(max_length=32, unique=True)
    zone_number = models.PositiveSmallIntegerField(unique=True)
    name = models.CharField(max_length=64)
    doip_logical_address = models.PositiveIntegerField()

    class Meta:
        ordering = ["zone_number"]

    def __str__(self) -> str:
        return self.gateway_id


class RegistryEcu(models.Model):
    """An ECU slot of the reference architecture; registered vehicles get their ECUs from here."""

    ecu_id = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=100)
    ecu_type = models.ForeignKey(
        "ecus.EcuType",
        on_delete=models.PROTECT,
        related_name="registry_entries",
    )
    zone = models.ForeignKey(
        "ecus.RegistryZone",
        on_delete=models.PROTECT,
        related_name="ecus",
    )
    hardware_version = models.CharField(max_length=VERSION_MAX_LENGTH)
    default_sw_version = models.CharField(max_length=VERSION_MAX_LENGTH)
    doip_logical_address = models.PositiveIntegerField(unique=True)
    update_priority = models.PositiveSmallIntegerField(
        choices=UpdatePriority.choices,
        default=UpdatePriority.NORMAL,
    )

    class Meta:
        verbose_name = "registry ECU"
        ordering = ["ecu_id"]

    def __str__(self) -> str:
        return self.ecu_id


class Ecu(models.Model):
    """One ECU of one vehicle, with the software it runs and the version it should run."""

    vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.CASCADE,
        related_name="ecus",
    )
    ecu_id = models.CharField(max_length=16)
    ecu_type = models.ForeignKey(
        "ecus.EcuType",
        on_delete=models.PROTECT,
        related_name="ecus",
    )
    zonal_gateway = models.ForeignKey(
        "vehicles.ZonalGateway",
        on_delete=models.PROTECT,
        related_name="ecus",
    )
    hardware_version = models.CharField(max_length=VERSION_MAX_LENGTH)
    sw_version = models.CharField(max_length=VERSION_MAX_LENGTH)
    sw_version_key = models.CharField(max_length=VERSION_KEY_MAX_LENGTH, editable=False)
    target_sw_version = models.CharField(max_length=VERSION_MAX_LENGTH, blank=True)
    doip_logical_address = models.PositiveIntegerField()
    update_priority = models.PositiveSmallIntegerField(
        choices=UpdatePriority.choices,
        default=UpdatePriority.NORMAL,
    )
    part_number = models.CharField(max_length=64, blank=True)
    supplier = models.CharField(max_length=64, blank=True)
    serial_number = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "ECU"
        ordering = ["vehicle", "ecu_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["vehicle", "ecu_id"], name="ecus_ecu_unique_per_vehicle"
            ),
        ]
        indexes = [
            # Campaign targeting: "vehicles whose ECM runs a version below X". On PostgreSQL
            # a covering twin (migration 0003) also serves the fleet list and version report.
            models.Index(fields=["ecu_type", "sw_version_key"], name="ecus_ecu_type_version"),
        ]

    def __str__(self) -> str:
        return f"{self.ecu_id} of {self.vehicle.vin}"

    def save(self, *args: object, **kwargs: object) -> None:
        self.sw_version_key = SemVer.coerce(self.sw_version).sort_key
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "sw_version" in update_fields:
            kwargs["update_fields"] = {*update_fields, "sw_version_key"}
        super().save(*args, **kwargs)

    @property
    def semver(self) -> SemVer:
        return SemVer.coerce(self.sw_version)


class SoftwareChange(models.Model):
    """A change of the software an ECU runs: the per-vehicle software history."""

    vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.CASCADE,
        related_name="software_changes",
    )
    ecu = models.ForeignKey(
        "ecus.Ecu",
        on_delete=models.CASCADE,
        related_name="software_changes",
    )
    from_version = models.CharField(max_length=VERSION_MAX_LENGTH, blank=True)
    to_version = models.CharField(max_length=VERSION_MAX_LENGTH)
    from_hardware_version = models.CharField(max_length=VERSION_MAX_LENGTH, blank=True)
    to_hardware_version = models.CharField(max_length=VERSION_MAX_LENGTH, blank=True)
    # "vci", "ecu_report", "ota" (confirmed by an update) or "operator".
    source = models.CharField(max_length=16)
    # The ota.OtaUpdate that caused it, as a plain id: ecus must not depend on the ota app.
    update_id = models.BigIntegerField(null=True, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["vehicle", "-recorded_at", "-id"]
        indexes = [
            models.Index(fields=["vehicle", "-recorded_at"], name="ecus_softwarechange_vehicle"),
        ]

    def __str__(self) -> str:
        return f"{self.ecu_id}: {self.from_version} -> {self.to_version}"
