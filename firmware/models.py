from __future__ import annotations

from django.conf import settings
from django.db import models

from ecus.versions import VERSION_KEY_MAX_LENGTH, VERSION_MAX_LENGTH, SemVer
from firmware.choices import FirmwareStatus, SigningKeyStatus
from firmware.querysets import FirmwareQuerySet, ZonePackageQuerySet

# Once a Firmware row exists these describe released bytes; changing them would make every
# package and audit record that names this release lie.
IMMUTABLE_FIRMWARE_FIELDS = ("ecu_type_id", "version", "file", "size", "sha256")


class ImmutableFirmwareError(Exception):
    """Someone tried to change or delete released firmware."""


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
        verbose_name = "firmware release"
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
        return f"{self.ecu_type.code} {self.version}"

    def save(self, *args: object, **kwargs: object) -> None:
        released = getattr(self, "_released", None)
        if released:
            changed = [
                name for name, value in released.items() if str(getattr(self, name)) != str(value)
            ]
            if changed:
                raise ImmutableFirmwareError(f"released firmware cannot change {changed}")
        self.version_key = SemVer.parse(self.version).sort_key
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ImmutableFirmwareError("released firmware is deprecated, never deleted")

    @classmethod
    def from_db(cls, db: str | None, field_names: list[str], values: list[object]) -> Firmware:
        instance = super().from_db(db, field_names, values)
        instance._released = {
            name: str(getattr(instance, name))
            for name in IMMUTABLE_FIRMWARE_FIELDS
            if name in instance.__dict__
        }
        return instance

    @property
    def is_available(self) -> bool:
        return self.status == FirmwareStatus.AVAILABLE

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
        verbose_name = "firmware compatibility"
        verbose_name_plural = "firmware compatibilities"
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
        verbose_name = "firmware dependency"
        verbose_name_plural = "firmware dependencies"
        constraints = [
            models.UniqueConstraint(
                fields=["firmware", "required_ecu_type"],
                name="firmware_firmwaredependency_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.firmware} needs {self.required_ecu_type.code} {self.min_version} or newer"

    def save(self, *args: object, **kwargs: object) -> None:
        self.min_version_key = SemVer.parse(self.min_version).sort_key
        super().save(*args, **kwargs)


class ZonePackage(models.Model):
    """A signed OTAP package for one zonal gateway, addressed by its content, shared by vehicles."""

    # Hex SHA-256 of the canonical zone content (gateway, ECU ids, from/to images, options):
    # the same content gets the same id, so it is built once and served to every vehicle.
    id = models.CharField(primary_key=True, max_length=64)
    zonal_gateway_id = models.CharField(max_length=32)
    content = models.JSONField()
    file = models.FileField(upload_to="packages/", max_length=255)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    package_version = models.PositiveBigIntegerField()
    expires_at = models.DateTimeField()
    signing_key = models.ForeignKey(
        "firmware.SigningKey",
        on_delete=models.PROTECT,
        related_name="packages",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    built_at = models.DateTimeField()
    firmware = models.ManyToManyField(
        "firmware.Firmware",
        related_name="zone_packages",
    )
    vehicles = models.ManyToManyField(
        "vehicles.Vehicle",
        related_name="zone_packages",
        blank=True,
    )

    objects = ZonePackageQuerySet.as_manager()

    class Meta:
        ordering = ["-built_at"]

    def __str__(self) -> str:
        return f"{self.zonal_gateway_id} v{self.package_version} ({self.id[:12]})"

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'


class SigningKey(models.Model):
    """Inventory row of a hybrid package-signing key pair; the private keys stay on disk."""

    name = models.CharField(max_length=64, unique=True)
    mldsa_key_id = models.CharField(max_length=32, unique=True)
    ecdsa_key_id = models.CharField(max_length=32, unique=True)
    status = models.CharField(
        max_length=16,
        choices=SigningKeyStatus.choices,
        default=SigningKeyStatus.ACTIVE,
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"
