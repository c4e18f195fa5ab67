"""Workflows of the ECU registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction

from ecus.models import EcuType, RegistryEcu, RegistryZone
from ecus.registry import Registry


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
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Load a validated registry: idempotent, updates changed entries in place, all or nothing."""
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
    return summary
