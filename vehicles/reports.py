"""Fleet-wide reports over the vehicles and the ECUs they carry."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, QuerySet

from ecus.models import Ecu, EcuType


@dataclass
class VersionRow:
    """ECUs of one type running one version, in total and per vehicle model."""

    version: str
    count: int = 0
    by_model: dict[str, int] = field(default_factory=dict)


@dataclass
class VersionReport:
    ecu: str
    total: int
    models: list[str]
    versions: list[VersionRow]


def version_report(ecu_type: EcuType, *, vehicles: QuerySet | None = None) -> VersionReport:
    """How many ECUs of `ecu_type` run each version, per model; newest version first.

    One GROUP BY over the ECU (type, version key) index; `vehicles` narrows it to a filtered
    fleet (a semi-join, as in the fleet list).
    """
    ecus = Ecu.objects.filter(ecu_type=ecu_type)
    if vehicles is not None:
        ecus = ecus.filter(vehicle_id__in=vehicles.values("pk"))
    grouped = (
        ecus.values("sw_version_key", "sw_version", "vehicle__model_name")
        .annotate(n=Count("id"))
        .order_by("-sw_version_key", "sw_version", "vehicle__model_name")
    )
    rows: dict[str, VersionRow] = {}
    models: set[str] = set()
    for group in grouped:
        row = rows.setdefault(group["sw_version"], VersionRow(version=group["sw_version"]))
        model = group["vehicle__model_name"]
        row.by_model[model] = row.by_model.get(model, 0) + group["n"]
        row.count += group["n"]
        models.add(model)
    versions = list(rows.values())
    return VersionReport(
        ecu=ecu_type.code,
        total=sum(row.count for row in versions),
        models=sorted(models),
        versions=versions,
    )
