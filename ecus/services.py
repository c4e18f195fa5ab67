"""Workflows of the ECU registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from core.api import DomainError, NotFoundError
from core.audit import record_event
from ecus.models import Ecu, EcuType, RegistryEcu, RegistryZone, SoftwareChange
from ecus.registry import Registry
from ecus.versions import InvalidVersion, SemVer


@dataclass
class ImportSummary:
    created: dict[str, int] = field(default_factory=lambda: {"types": 0, "zones": 0, "ecus": 0})
    updated: dict[str, int] = field(default_factory=lambda: {"types": 0, "zones": 0, "ecus": 0})
    unchanged: dict[str, int] = field(default_factory=lambda: {"types": 0, "zones": 0, "ecus": 0})

    @property
    def changed(self) -> bool:
        return any(self.created.values()) or any(self.updated.values())


def _upsert(model: type, lookup: dict, values: dict, summary: ImportSummary, kind: str):
    """Create or update one row in place, counting whether anything changed."""
    obj = model.objects.filter(**lookup).first()
    if obj is None:
        summary.created[kind] += 1
        return model.objects.create(**lookup, **values)
    changed = [name for name, value in values.items() if getattr(obj, name) != value]
    if changed:
        for name in changed:
            setattr(obj, name, values[name])
        obj.save(update_fields=changed)
        summary.updated[kind] += 1
    else:
        summary.unchanged[kind] += 1
    return obj


@transaction.atomic
def import_registry(
    registry: Registry,
    *,
    actor: Any = "system:import_registry",
    os_user: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Load a validated registry: idempotent, updates changed entries in place, all or nothing.

    A run that changed something leaves one audit event with the counts and the file's digest.
    """
    summary = ImportSummary()
    types = {
        entry.code: _upsert(EcuType, {"code": entry.code}, {"name": entry.name}, summary, "types")
        for entry in registry.ecu_types
    }
    zones = {
        entry.gateway_id: _upsert(
            RegistryZone,
            {"gateway_id": entry.gateway_id},
            {
                "zone_number": entry.zone_number,
                "name": entry.name,
                "doip_logical_address": entry.doip_logical_address,
            },
            summary,
            "zones",
        )
        for entry in registry.zones
    }
    total = len(registry.ecus)
    for index, entry in enumerate(registry.ecus, start=1):
        _upsert(
            RegistryEcu,
            {"ecu_id": entry.ecu_id},
            {
                "name": entry.name,
                "ecu_type": types[entry.type_code],
                "zone": zones[entry.gateway_id],
                "hardware_version": entry.hardware_version,
                "default_sw_version": entry.default_sw_version,
                "doip_logical_address": entry.doip_logical_address,
                "update_priority": entry.update_priority,
            },
            summary,
            "ecus",
        )
        if progress is not None:
            progress(index, total)
    if summary.changed:
        record_event(
            action="ecu_registry.imported",
            actor=actor,
            object_type="ecu_registry",
            object_id=registry.sha256,
            details={
                "created": summary.created,
                "updated": summary.updated,
                "unchanged": summary.unchanged,
                "sha256": registry.sha256,
                "os_user": os_user,
            },
        )
    return summary


def _checked_version(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise DomainError("a version string is required", field=field)
    try:
        SemVer.coerce(value)
    except InvalidVersion as exc:
        raise DomainError(str(exc), field=field)
    return value


@transaction.atomic
def report_ecu_version(
    *, vehicle: Any, ecu_id: str, sw_version: Any, hw_version: Any = None, actor: Any = None
) -> Ecu:
    """Record the software one ECU runs, as its vehicle reports it, with the history row."""
    sw_version = _checked_version(sw_version, "sw_version")
    if hw_version is not None:
        hw_version = _checked_version(hw_version, "hw_version")
    ecu = Ecu.objects.select_for_update().filter(vehicle=vehicle, ecu_id=ecu_id).first()
    if ecu is None:
        raise NotFoundError(f"this vehicle has no ECU {ecu_id}", field="ecu_id")
    hardware = hw_version or ecu.hardware_version
    if ecu.sw_version == sw_version and ecu.hardware_version == hardware:
        return ecu
    SoftwareChange.objects.create(
        vehicle=vehicle,
        ecu=ecu,
        from_version=ecu.sw_version,
        to_version=sw_version,
        from_hardware_version=ecu.hardware_version,
        to_hardware_version=hardware,
        source="ecu_report",
    )
    record_event(
        action="ecu.version_reported",
        actor=actor or f"vehicle:{vehicle.vin}",
        vehicle_vin=vehicle.vin,
        object_type="ecu",
        object_id=ecu_id,
        before={ecu_id: ecu.sw_version},
        after={ecu_id: sw_version},
    )
    ecu.sw_version = sw_version
    ecu.hardware_version = hardware
    ecu.save(update_fields=["sw_version", "hardware_version", "updated_at"])
    return ecu
