"""Vehicle workflows: registration from the ECU registry."""

from __future__ import annotations

from django.db import transaction

from core.api import ConflictError, DomainError
from ecus.models import Ecu, RegistryEcu, RegistryZone
from ecus.versions import SemVer
from vehicles.models import Vehicle, ZonalGateway
from vehicles.validators import VIN_PATTERN


@transaction.atomic
def register_vehicle(
    *,
    vin: str,
    model_name: str,
    model_year: int,
    vmg_id: str = "",
    certificate_fingerprint: str = "",
    certificate_serial: str = "",
) -> Vehicle:
    """Register a vehicle and give it the zonal gateways and ECUs of the registry."""
    if not VIN_PATTERN.fullmatch(vin or ""):
        raise DomainError("not a VIN: 17 characters without I, O, Q", field="vin")
    if Vehicle.objects.filter(vin=vin).exists():
        raise ConflictError(f"vehicle {vin} is already registered", field="vin")
    zones = list(RegistryZone.objects.all())
    if not zones:
        raise DomainError("the ECU registry is empty: run `manage.py import_registry` first")
    vehicle = Vehicle.objects.create(
        vin=vin,
        model_name=model_name,
        model_year=model_year,
        vmg_id=vmg_id,
        certificate_fingerprint=certificate_fingerprint,
        certificate_serial=certificate_serial,
    )
    gateways = ZonalGateway.objects.bulk_create(
        ZonalGateway(
            vehicle=vehicle,
            gateway_id=zone.gateway_id,
            zone_number=zone.zone_number,
            name=zone.name,
            doip_logical_address=zone.doip_logical_address,
        )
        for zone in zones
    )
    gateway_by_zone = {zone.pk: gateway for zone, gateway in zip(zones, gateways, strict=True)}
    Ecu.objects.bulk_create(
        Ecu(
            vehicle=vehicle,
            ecu_id=entry.ecu_id,
            ecu_type_id=entry.ecu_type_id,
            zonal_gateway=gateway_by_zone[entry.zone_id],
            hardware_version=entry.hardware_version,
            sw_version=entry.default_sw_version,
            # bulk_create skips save(), so the sort key is computed here.
            sw_version_key=SemVer.coerce(entry.default_sw_version).sort_key,
            doip_logical_address=entry.doip_logical_address,
            update_priority=entry.update_priority,
        )
        for entry in RegistryEcu.objects.order_by("ecu_id")
    )
    return vehicle
