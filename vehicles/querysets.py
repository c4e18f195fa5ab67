from __future__ import annotations

from django.db import models


class VehicleQuerySet(models.QuerySet):
    def online(self) -> VehicleQuerySet:
        return self.filter(is_online=True)

    def with_ecus(self) -> VehicleQuerySet:
        return self.prefetch_related("zonal_gateways", "ecus__ecu_type", "ecus__zonal_gateway")

    def for_list(self) -> VehicleQuerySet:
        """The columns of the fleet list, and no more: at 100k vehicles the row width counts."""
        return self.only(
            "id",
            "vin",
            "model_name",
            "model_year",
            "status",
            "is_online",
            "last_seen_at",
            "tls_group",
            "tls_signature_algorithm",
            "certificate_not_after",
            "created_at",
        )
