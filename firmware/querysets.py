from __future__ import annotations

from django.db import models

from firmware.choices import FirmwareStatus


class FirmwareQuerySet(models.QuerySet):
    def available(self) -> FirmwareQuerySet:
        return self.filter(status=FirmwareStatus.AVAILABLE)

    def compatible_with(self, *, ecu_type_id: int, hardware_version: str) -> FirmwareQuerySet:
        return self.filter(
            ecu_type_id=ecu_type_id, compatibilities__hardware_version=hardware_version
        )

    def newest_for(self, *, ecu_type_id: int, hardware_version: str):  # -> Firmware | None
        """The newest available firmware for an ECU type and hardware version: one indexed query."""
        return (
            self.available()
            .compatible_with(ecu_type_id=ecu_type_id, hardware_version=hardware_version)
            .order_by("-version_key")
            .first()
        )


class ZonePackageQuerySet(models.QuerySet):
    def for_vehicle(self, vehicle: object) -> ZonePackageQuerySet:
        """Packages this vehicle may download."""
        if vehicle is None:
            return self.none()
        return self.filter(vehicles=vehicle)
