from __future__ import annotations

from django.db import models


class VehicleQuerySet(models.QuerySet):
    def online(self) -> VehicleQuerySet:
        return self.filter(is_online=True)

    def with_ecus(self) -> VehicleQuerySet:
        return self.prefetch_related("zonal_gateways", "ecus__ecu_type", "ecus__zonal_gateway")
