from __future__ import annotations

from django.conf import settings
from django.db import models

from ecus.versions import VERSION_KEY_MAX_LENGTH, VERSION_MAX_LENGTH, SemVer
from firmware.choices import FirmwareStatus
from firmware.querysets import FirmwareQuerySet


class Firmware(models.Model):
    """A released firmware image for one ECU type; immutable once stored, deprecated not deleted."""

    ecu_type = models.ForeignKey(
        "ecus.EcuType",
        on_delete=models.PROTECT,
        related_name="firmware",
    )
    version = models.CharField(max_length=VERSION_MAX_LENGTH)
    version_key = models.CharField(max_length=VERSION_KEY_MAX_LENGTH, editable=False)
    file = models.FileField(upload_to="firmware/", max_length=255)
    original_filename = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16,
        choices=FirmwareStatus.choices,
        default=FirmwareStatus.AVAILABLE,
    )
    release_notes = models.TextField(blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="uploaded_firmware",
        null=True,
        blank=True,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = FirmwareQuerySet.as_manager()

    class Meta:
        ordering = ["ecu_type", "-version_key"]
        constraints = [
            models.UniqueConstraint(
                fields=["ecu_type", "version"],
                name="firmware_firmware_unique_version",
            ),
        ]
        indexes = [
            # The update check's "newest available firmware for this ECU type" lookup.
            models.Index(
                fields=["ecu_type", "status", "-version_key"],
                name="firmware_firmware_newest",
            ),
            models.Index(fields=["sha256"], name="firmware_firmware_sha256"),
        ]

    def __str__(self) -> str:
        return f"{self.ecu_type_id}:{self.version}"

    def save(self, *args: object, **kwargs: object) -> None:
        self.version_key = SemVer.parse(self.version).sort_key
        super().save(*args, **kwargs)

    @property
    def semver(self) -> SemVer:
        return SemVer.parse(self.version)


class FirmwareCompatibility(models.Model):
    """A hardware version that a firmware image runs on."""

    firmware = models.ForeignKey(
        "firmware.Firmware",
        on_delete=models.CASCADE,
        related_name="compatibilities",
    )
    hardware_version = models.CharField(max_length=VERSION_MAX_LENGTH)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["firmware", "hardware_version"],
                name="firmware_firmwarecompatibility_unique",
            ),
        ]
        indexes = [
            models.Index(
                fields=["hardware_version", "firmware"],
                name="firmware_compat_hw",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.firmware} on hw {self.hardware_version}"


class FirmwareDependency(models.Model):
    """Installing this firmware requires another ECU type of the vehicle at a minimum version."""

    firmware = models.ForeignKey(
        "firmware.Firmware",
        on_delete=models.CASCADE,
        related_name="dependencies",
    )
    required_ecu_type = models.ForeignKey(
        "ecus.EcuType",
        on_delete=models.PROTECT,
        related_name="required_by",
    )
    min_version = models.CharField(max_length=VERSION_MAX_LENGTH)
    min_version_key = models.CharField(max_length=VERSION_KEY_MAX_LENGTH, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["firmware", "required_ecu_type"],
                name="firmware_firmwaredependency_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.firmware} needs {self.required_ecu_type_id}>={self.min_version}"

    def save(self, *args: object, **kwargs: object) -> None:
        self.min_version_key = SemVer.parse(self.min_version).sort_key
        super().save(*args, **kwargs)
