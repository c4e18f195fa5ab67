from __future__ import annotations

from django.db import models

from uptane.choices import Repository


class OnlineKey(models.Model):
    """A key the server signs with: image snapshot/timestamp and every director role.

    The private key is a file under the Uptane key directory; the image repository's root and
    targets keys are offline and never stored here.
    """

    repository = models.CharField(max_length=16, choices=Repository.choices)
    role = models.CharField(max_length=32)
    keyid = models.CharField(max_length=64)
    algorithm = models.CharField(max_length=16)
    public_key = models.JSONField()
    private_key_file = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["repository", "role", "algorithm"]
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "keyid"], name="uptane_onlinekey_unique_keyid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.repository}/{self.role} {self.algorithm} {self.keyid[:12]}"


class SignedMetadata(models.Model):
    """One version of one role's signed metadata, as served byte for byte.

    Director targets, snapshot and timestamp are per vehicle; everything else has no vehicle.
    """

    repository = models.CharField(max_length=16, choices=Repository.choices)
    role = models.CharField(max_length=64)
    vehicle = models.ForeignKey(
        "vehicles.Vehicle",
        on_delete=models.CASCADE,
        related_name="uptane_metadata",
        null=True,
        blank=True,
    )
    version = models.PositiveIntegerField()
    expires_at = models.DateTimeField()
    body = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "signed metadata"
        verbose_name_plural = "signed metadata"
        ordering = ["repository", "role", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "role", "vehicle", "version"],
                name="uptane_signedmetadata_unique_vehicle_version",
                condition=models.Q(vehicle__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["repository", "role", "version"],
                name="uptane_signedmetadata_unique_version",
                condition=models.Q(vehicle__isnull=True),
            ),
        ]
        indexes = [
            # "Newest version of this role (for this vehicle)": every metadata request.
            models.Index(
                fields=["repository", "role", "vehicle", "-version"],
                name="uptane_signedmetadata_newest",
            ),
        ]

    def __str__(self) -> str:
        owner = f" vehicle {self.vehicle_id}" if self.vehicle_id else ""
        return f"{self.repository}/{self.role} v{self.version}{owner}"
