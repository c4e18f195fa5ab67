"""Vehicle workflows: registration, certificate binding and configuration reports (VCI)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from core.api import ConflictError, DomainError
from core.audit import record_event
from ecus.models import Ecu, RegistryEcu, RegistryZone, SoftwareChange
from ecus.versions import InvalidVersion, SemVer
from vehicles.filters import filter_vehicles
from vehicles.models import SavedFilter, VciSnapshot, Vehicle, ZonalGateway
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
    certificate_not_after: dt.datetime | None = None,
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
        certificate_not_after=certificate_not_after,
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


def register_vehicle_identity(
    *,
    vin: str,
    model_name: str,
    model_year: int,
    vmg_id: str = "",
    certificate_fingerprint: str = "",
    certificate_serial: str = "",
    certificate_not_after: dt.datetime | None = None,
    actor: Any = None,
) -> tuple[Vehicle, bool]:
    """Register a vehicle, or bind a pre-registered one to the certificate it calls with.

    Returns (vehicle, created). A vehicle already bound to another certificate never gets here:
    authentication refuses that certificate first.
    """
    with transaction.atomic():
        existing = Vehicle.objects.select_for_update().filter(vin=vin).first()
        if existing is None:
            vehicle = register_vehicle(
                vin=vin,
                model_name=model_name,
                model_year=model_year,
                vmg_id=vmg_id,
                certificate_fingerprint=certificate_fingerprint,
                certificate_serial=certificate_serial,
                certificate_not_after=certificate_not_after,
            )
            record_event(
                action="vehicle.registered",
                actor=actor,
                vehicle_vin=vin,
                object_type="vehicle",
                object_id=vehicle.pk,
                after={"model_name": model_name, "model_year": model_year, "vmg_id": vmg_id},
                details={"certificate_fingerprint": certificate_fingerprint},
            )
            return vehicle, True
        if not certificate_fingerprint:
            raise ConflictError(f"vehicle {vin} is already registered", field="vin")
        if (
            existing.certificate_fingerprint
            and existing.certificate_fingerprint != certificate_fingerprint
        ):
            raise ConflictError("this VIN is bound to another certificate", field="vin")
        if existing.certificate_fingerprint == certificate_fingerprint:
            return existing, False  # the same vehicle registering again: nothing to change
        existing.certificate_fingerprint = certificate_fingerprint
        existing.certificate_serial = certificate_serial
        existing.certificate_not_after = certificate_not_after
        existing.vmg_id = vmg_id or existing.vmg_id
        existing.save(
            update_fields=[
                "certificate_fingerprint",
                "certificate_serial",
                "certificate_not_after",
                "vmg_id",
            ]
        )
        record_event(
            action="vehicle.certificate_bound",
            actor=actor,
            vehicle_vin=vin,
            object_type="vehicle",
            object_id=existing.pk,
            after={"certificate_fingerprint": certificate_fingerprint},
        )
        return existing, False


# ---------------------------------------------------------------------------------------------
# Vehicle configuration reports (VCI)


@dataclass(frozen=True)
class StoredVci:
    snapshot: VciSnapshot
    changed: list[str]  # ECU ids whose software the report changed
    running: dict[str, str]  # ECU id -> the software version it reports


def _text(data: dict, name: str, where: str, limit: int = 64) -> str:
    value = data.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DomainError("must be a string", field=f"{where}{name}")
    if len(value) > limit:
        raise DomainError(f"must be at most {limit} characters", field=f"{where}{name}")
    return value


def parse_vci_timestamp(value: Any) -> dt.datetime:
    """Unix seconds (int or float) or ISO 8601; a naive ISO time is taken as UTC."""
    if isinstance(value, bool) or value is None:
        raise DomainError("Unix seconds or an ISO 8601 time is required", field="timestamp")
    if isinstance(value, int | float):
        try:
            return dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise DomainError("not a valid Unix time", field="timestamp")
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise DomainError("not an ISO 8601 time", field="timestamp")
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    raise DomainError("Unix seconds or an ISO 8601 time is required", field="timestamp")


def _parse_vci_ecus(vci: dict, known: dict[str, Ecu]) -> list[dict[str, str]]:
    entries = vci.get("ecus")
    if not isinstance(entries, list) or not entries:
        raise DomainError("a non-empty list of ECUs is required", field="ecus")
    seen: set[str] = set()
    parsed = []
    for index, entry in enumerate(entries):
        where = f"ecus[{index}]."
        if not isinstance(entry, dict):
            raise DomainError("each ECU is an object", field=f"ecus[{index}]")
        ecu_id = _text(entry, "ecu_id", where, 16)
        if ecu_id not in known:
            raise DomainError(f"this vehicle has no ECU {ecu_id!r}", field=f"{where}ecu_id")
        if ecu_id in seen:
            raise DomainError(f"{ecu_id} is listed twice", field=f"{where}ecu_id")
        seen.add(ecu_id)
        row = {"ecu_id": ecu_id}
        for name in ("sw_version", "hw_version"):
            value = entry.get(name)
            if not isinstance(value, str) or not value:
                raise DomainError("a version string is required", field=f"{where}{name}")
            try:
                SemVer.coerce(value)
            except InvalidVersion as exc:
                raise DomainError(str(exc), field=f"{where}{name}")
            row[name] = value
        for name in ("part_number", "supplier", "serial_number"):
            row[name] = _text(entry, name, where)
        parsed.append(row)
    return parsed


@dataclass(frozen=True)
class VciHeader:
    """The fields of a VCI checked before anything is locked."""

    reported_at: dt.datetime
    device_id: str
    trigger: str


def check_vci_header(*, vehicle: Vehicle, vci: Any) -> VciHeader:
    """Check what a VCI says of itself; errors name the field."""
    if not isinstance(vci, dict):
        raise DomainError("a VCI is a JSON object", field="non_field_errors")
    if vci.get("vin") != vehicle.vin:
        raise DomainError(f"must be this vehicle's VIN {vehicle.vin}", field="vin")
    return VciHeader(
        reported_at=parse_vci_timestamp(vci.get("timestamp")),
        device_id=_text(vci, "device_id", ""),
        trigger=_text(vci, "trigger", "", 32),
    )


def lock_vehicle_row(vehicle: Vehicle) -> None:
    """Lock the vehicle's row, the first lock of every write about one vehicle."""
    Vehicle.objects.select_for_update().filter(pk=vehicle.pk).values_list("pk").first()


def store_vci(
    *, vehicle: Vehicle, vci: dict[str, Any], header: VciHeader, source: str
) -> StoredVci:
    """Store a checked VCI: each ECU's software, the snapshot, an audit event if it changed.

    Called by ota.vci.record_vci inside its transaction, with the vehicle row and the vehicle's
    open updates locked, in that order, before the ECU rows are read here.
    """
    known = {ecu.ecu_id: ecu for ecu in Ecu.objects.filter(vehicle=vehicle)}
    entries = _parse_vci_ecus(vci, known)
    changed = _apply_vci(vehicle, entries, known)
    snapshot = VciSnapshot.objects.create(
        vehicle=vehicle,
        device_id=header.device_id,
        trigger=header.trigger,
        reported_at=header.reported_at,
        ecu_count=len(entries),
        changed_ecus=[c.ecu.ecu_id for c in changed],
        payload=vci,
    )
    if changed:
        record_event(
            action="vehicle.vci_changed",
            actor=f"vehicle:{vehicle.vin}",
            vehicle_vin=vehicle.vin,
            object_type="vci_snapshot",
            object_id=snapshot.pk,
            before={c.ecu.ecu_id: c.from_version for c in changed},
            after={c.ecu.ecu_id: c.to_version for c in changed},
            details={"source": source, "trigger": header.trigger},
        )
    Vehicle.objects.filter(pk=vehicle.pk).update(last_seen_at=timezone.now())
    return StoredVci(
        snapshot=snapshot,
        changed=[c.ecu.ecu_id for c in changed],
        running={e["ecu_id"]: e["sw_version"] for e in entries},
    )


ECU_REPORTED_FIELDS = (
    "sw_version",
    "sw_version_key",
    "hardware_version",
    "part_number",
    "supplier",
    "serial_number",
    "updated_at",
)


def _write_reported_fields(ecus: list[Ecu]) -> None:
    """Write what a VCI reports of these ECUs: one UPDATE per row, sent in one executemany.

    `bulk_update` builds a CASE expression per field and row; for the 100 ECUs a first report
    fills in (registration knows no part numbers, suppliers or serials) that cost about 100 ms
    of Python per vehicle, seven times the rest of the report.
    """
    now = timezone.now()
    fields = [Ecu._meta.get_field(name) for name in ECU_REPORTED_FIELDS]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = f"UPDATE {quote(Ecu._meta.db_table)} SET {assignments} WHERE {quote('id')} = %s"
    rows = []
    for ecu in ecus:
        ecu.updated_at = now
        values = [
            field.get_db_prep_save(getattr(ecu, field.attname), connection) for field in fields
        ]
        rows.append([*values, ecu.pk])
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _apply_vci(
    vehicle: Vehicle, entries: list[dict[str, str]], known: dict[str, Ecu]
) -> list[SoftwareChange]:
    changes: list[SoftwareChange] = []
    dirty: list[Ecu] = []
    for entry in entries:
        ecu = known[entry["ecu_id"]]
        software_changed = ecu.sw_version != entry["sw_version"]
        hardware_changed = ecu.hardware_version != entry["hw_version"]
        if software_changed or hardware_changed:
            changes.append(
                SoftwareChange(
                    vehicle=vehicle,
                    ecu=ecu,
                    from_version=ecu.sw_version,
                    to_version=entry["sw_version"],
                    from_hardware_version=ecu.hardware_version,
                    to_hardware_version=entry["hw_version"],
                    source="vci",
                )
            )
        identity = {k: entry[k] for k in ("part_number", "supplier", "serial_number") if entry[k]}
        if (
            software_changed
            or hardware_changed
            or any(getattr(ecu, k) != v for k, v in identity.items())
        ):
            ecu.sw_version = entry["sw_version"]
            ecu.sw_version_key = SemVer.coerce(entry["sw_version"]).sort_key
            ecu.hardware_version = entry["hw_version"]
            for name, value in identity.items():
                setattr(ecu, name, value)
            dirty.append(ecu)
    if dirty:
        _write_reported_fields(dirty)
    if changes:
        SoftwareChange.objects.bulk_create(changes)
    return changes


# ---------------------------------------------------------------------------------------------
# Saved filters (dynamic groups)

SAVED_FILTER_FIELDS = ("name", "description", "query")


def _checked_saved_filter(fields: dict[str, Any], *, exclude_pk: int | None = None) -> None:
    name = fields["name"]
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise DomainError("a name of 1 to 100 characters", field="name")
    if SavedFilter.objects.filter(name=name).exclude(pk=exclude_pk).exists():
        raise ConflictError(f"a saved filter named {name!r} exists", field="name")
    if not isinstance(fields["description"], str):
        raise DomainError("text", field="description")
    query = fields["query"]
    if not isinstance(query, dict) or not all(
        isinstance(value, str | int | bool) for value in query.values()
    ):
        raise DomainError('the list\'s parameters as {"parameter": "value"}', field="query")
    try:
        filter_vehicles(query)
    except DomainError as exc:
        raise DomainError(exc.message, field="query") from None


def _saved_filter_state(saved: SavedFilter) -> dict[str, Any]:
    return {"name": saved.name, "description": saved.description, "query": saved.query}


@transaction.atomic(durable=True)
def create_saved_filter(
    *, name: str, query: dict[str, Any], description: str = "", actor: Any = None
) -> SavedFilter:
    """Save a fleet-list query under a name; campaigns may target it."""
    fields = {"name": name, "description": description, "query": query}
    _checked_saved_filter(fields)
    saved = SavedFilter.objects.create(created_by=_user_or_none(actor), **fields)
    record_event(
        action="saved_filter.created",
        actor=actor,
        object_type="saved_filter",
        object_id=saved.pk,
        after=_saved_filter_state(saved),
    )
    return saved


@transaction.atomic(durable=True)
def update_saved_filter(saved: SavedFilter, *, actor: Any = None, **changes: Any) -> SavedFilter:
    """Change a saved filter; campaigns targeting it select by the new query from then on."""
    unknown = set(changes) - set(SAVED_FILTER_FIELDS)
    if unknown:
        raise DomainError("not a saved filter field", field=sorted(unknown)[0])
    saved = SavedFilter.objects.select_for_update().get(pk=saved.pk)
    before = _saved_filter_state(saved)
    fields = before | changes
    _checked_saved_filter(fields, exclude_pk=saved.pk)
    for name, value in changes.items():
        setattr(saved, name, value)
    saved.save(update_fields=[*changes, "updated_at"])
    record_event(
        action="saved_filter.changed",
        actor=actor,
        object_type="saved_filter",
        object_id=saved.pk,
        before=before,
        after=_saved_filter_state(saved),
    )
    return saved


@transaction.atomic(durable=True)
def delete_saved_filter(saved: SavedFilter, *, actor: Any = None) -> None:
    """Delete a saved filter no campaign targets."""
    saved = SavedFilter.objects.select_for_update().get(pk=saved.pk)
    if saved.campaigns.exists():
        raise ConflictError("campaigns target this filter", field="saved_filter")
    record_event(
        action="saved_filter.deleted",
        actor=actor,
        object_type="saved_filter",
        object_id=saved.pk,
        before=_saved_filter_state(saved),
    )
    saved.delete()


def _user_or_none(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) and actor.pk else None
