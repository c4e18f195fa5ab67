"""Update plans: which ECUs of a vehicle to update, to what, and in which order.

Loading is a fixed number of queries whatever the ECU count; the planning itself is pure.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Collection
from dataclasses import asdict, dataclass, field

from ecus.models import Ecu
from firmware.models import Firmware, FirmwareDependency


@dataclass(frozen=True)
class Candidate:
    """An available firmware release that runs on one hardware version."""

    firmware_id: int
    ecu_type_id: int
    version: str
    version_key: str
    hardware_version: str


@dataclass(frozen=True)
class Requirement:
    firmware_id: int
    ecu_type_id: int
    ecu_type_code: str
    min_version: str
    min_version_key: str


@dataclass(frozen=True)
class EcuState:
    ecu_id: str
    ecu_type_id: int
    ecu_type_code: str
    zonal_gateway_id: str
    hardware_version: str
    sw_version: str
    sw_version_key: str
    priority: int


@dataclass
class PlanItem:
    ecu_id: str
    ecu_type: str
    zonal_gateway_id: str
    hardware_version: str
    from_version: str
    to_version: str
    firmware_id: int
    priority: int
    reason: str  # "outdated" or "dependency"
    requires: list[str] = field(default_factory=list)


@dataclass
class Plan:
    items: list[PlanItem] = field(default_factory=list)
    refused: str = ""

    def as_dict(self) -> dict:
        return {"items": [asdict(item) for item in self.items], "refused": self.refused}


class PlanRefused(Exception):
    """The plan cannot be satisfied; the message says why."""


def load_ecu_states(vehicle_id: int) -> list[EcuState]:
    rows = Ecu.objects.filter(vehicle_id=vehicle_id).values_list(
        "ecu_id",
        "ecu_type_id",
        "ecu_type__code",
        "zonal_gateway__gateway_id",
        "hardware_version",
        "sw_version",
        "sw_version_key",
        "update_priority",
    )
    return [EcuState(*row) for row in rows]


def load_candidates(ecus: list[EcuState]) -> list[Candidate]:
    """Every available firmware that runs on some ECU of the vehicle: one query."""
    rows = (
        Firmware.objects.available()
        .filter(
            ecu_type_id__in={e.ecu_type_id for e in ecus},
            compatibilities__hardware_version__in={e.hardware_version for e in ecus},
        )
        .values_list(
            "id", "ecu_type_id", "version", "version_key", "compatibilities__hardware_version"
        )
    )
    return [Candidate(*row) for row in rows]


def load_requirements(firmware_ids: Collection[int]) -> list[Requirement]:
    rows = FirmwareDependency.objects.filter(firmware_id__in=firmware_ids).values_list(
        "firmware_id",
        "required_ecu_type_id",
        "required_ecu_type__code",
        "min_version",
        "min_version_key",
    )
    return [Requirement(*row) for row in rows]


def analyse_vehicle(
    vehicle_id: int,
    *,
    firmware_ids: Collection[int] | None = None,
    zones: Collection[str] = (),
) -> Plan:
    """The update plan of a vehicle: newest compatible firmware, or only `firmware_ids` (a campaign).

    Three queries: ECUs, candidate firmware, dependencies.
    """
    ecus = load_ecu_states(vehicle_id)
    candidates = load_candidates(ecus) if ecus else []
    requirements = load_requirements({c.firmware_id for c in candidates}) if candidates else []
    return build_plan(ecus, candidates, requirements, firmware_ids=firmware_ids, zones=zones)


def _newest(candidates: list[Candidate]) -> dict[tuple[int, str], Candidate]:
    best: dict[tuple[int, str], Candidate] = {}
    for candidate in candidates:
        slot = (candidate.ecu_type_id, candidate.hardware_version)
        if slot not in best or candidate.version_key > best[slot].version_key:
            best[slot] = candidate
    return best


def build_plan(
    ecus: list[EcuState],
    candidates: list[Candidate],
    requirements: list[Requirement],
    *,
    firmware_ids: Collection[int] | None = None,
    zones: Collection[str] = (),
) -> Plan:
    """Pick targets, close over dependencies, and order installs; refusal carries the reason."""
    scoped = [c for c in candidates if firmware_ids is None or c.firmware_id in firmware_ids]
    targets = _newest(scoped)
    fallback = _newest(candidates)
    needs: dict[int, list[Requirement]] = defaultdict(list)
    for requirement in requirements:
        needs[requirement.firmware_id].append(requirement)
    items: dict[str, PlanItem] = {}
    for ecu in ecus:
        if zones and ecu.zonal_gateway_id not in zones:
            continue
        target = targets.get((ecu.ecu_type_id, ecu.hardware_version))
        if target is not None and target.version_key > ecu.sw_version_key:
            items[ecu.ecu_id] = _item(ecu, target, "outdated")
    try:
        key_of = {c.firmware_id: c.version_key for c in candidates}
        _close_dependencies(items, ecus, fallback, needs, key_of)
        ordered = _order(items)
    except PlanRefused as refusal:
        return Plan(items=[], refused=str(refusal))
    return Plan(items=ordered)


def _item(ecu: EcuState, target: Candidate, reason: str) -> PlanItem:
    return PlanItem(
        ecu_id=ecu.ecu_id,
        ecu_type=ecu.ecu_type_code,
        zonal_gateway_id=ecu.zonal_gateway_id,
        hardware_version=ecu.hardware_version,
        from_version=ecu.sw_version,
        to_version=target.version,
        firmware_id=target.firmware_id,
        priority=ecu.priority,
        reason=reason,
    )


def _close_dependencies(
    items: dict[str, PlanItem],
    ecus: list[EcuState],
    fallback: dict[tuple[int, str], Candidate],
    needs: dict[int, list[Requirement]],
    key_of: dict[int, str],
) -> None:
    """Add the updates that planned firmware requires; refuse when one cannot be met."""
    by_type: dict[int, list[EcuState]] = defaultdict(list)
    for ecu in ecus:
        by_type[ecu.ecu_type_id].append(ecu)
    pending = list(items.values())
    while pending:
        item = pending.pop()
        for requirement in needs.get(item.firmware_id, []):
            required = by_type.get(requirement.ecu_type_id, [])
            if not required:
                raise PlanRefused(
                    f"{item.ecu_type} {item.to_version} needs {requirement.ecu_type_code} >= "
                    f"{requirement.min_version}, which this vehicle does not have"
                )
            for ecu in required:
                planned = items.get(ecu.ecu_id)
                effective = key_of[planned.firmware_id] if planned else ecu.sw_version_key
                if effective >= requirement.min_version_key:
                    if planned and ecu.ecu_id not in item.requires:
                        item.requires.append(ecu.ecu_id)
                    continue
                best = fallback.get((ecu.ecu_type_id, ecu.hardware_version))
                if best is None or best.version_key < requirement.min_version_key:
                    raise PlanRefused(
                        f"{item.ecu_id} ({item.ecu_type} {item.to_version}) needs "
                        f"{requirement.ecu_type_code} >= {requirement.min_version}, but "
                        f"{ecu.ecu_id} (hardware {ecu.hardware_version}) runs {ecu.sw_version} "
                        "and no available firmware reaches that version"
                    )
                added = _item(ecu, best, "dependency")
                items[ecu.ecu_id] = added
                item.requires.append(ecu.ecu_id)
                pending.append(added)


def _order(items: dict[str, PlanItem]) -> list[PlanItem]:
    """Topological order (required ECUs first), ties broken by priority then ECU id."""
    waiting = {ecu_id: {r for r in item.requires if r in items} for ecu_id, item in items.items()}
    dependants: dict[str, list[str]] = defaultdict(list)
    for ecu_id, required in waiting.items():
        for other in required:
            dependants[other].append(ecu_id)
    ready = [(items[e].priority, e) for e, required in waiting.items() if not required]
    heapq.heapify(ready)
    ordered: list[PlanItem] = []
    while ready:
        _, ecu_id = heapq.heappop(ready)
        ordered.append(items[ecu_id])
        for dependant in dependants[ecu_id]:
            waiting[dependant].discard(ecu_id)
            if not waiting[dependant]:
                heapq.heappush(ready, (items[dependant].priority, dependant))
    if len(ordered) != len(items):
        stuck = sorted(set(items) - {item.ecu_id for item in ordered})
        raise PlanRefused(f"circular firmware dependencies between {', '.join(stuck)}")
    return ordered
