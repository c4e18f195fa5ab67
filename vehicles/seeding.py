"""A synthetic fleet in bulk, for load tests, benchmarks and demonstrations at fleet size.

Vehicles get the zonal gateways and ECUs of the registry, as registered vehicles do, with a
spread of models, years, states, negotiated TLS configurations, certificate expiries and ECU
versions, so every filter of the fleet list has something to select. Synthetic VINs start with
SYNTHETIC_PREFIX; the workflow refuses a database holding other vehicles unless forced.
"""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from core.api import DomainError
from core.audit import record_event
from ecus.models import Ecu, RegistryEcu, RegistryZone
from ecus.versions import SemVer
from vehicles.choices import VehicleStatus
from vehicles.models import Vehicle, ZonalGateway

# 17 VIN characters: the prefix, then a 12-digit serial (no I, O or Q anywhere).
SYNTHETIC_PREFIX = "SYNTH"
MODELS = ("Aurora", "Borealis", "Cirrus", "Dynamo", "Equinox")
YEARS = tuple(range(2020, 2027))
STATUSES = (
    (VehicleStatus.ACTIVE, 0.80),
    (VehicleStatus.REGISTERED, 0.12),
    (VehicleStatus.UPDATING, 0.05),
    (VehicleStatus.DECOMMISSIONED, 0.03),
)
# (group, signature algorithm) pairs of the PQC catalogue (config/pqc_configs.yaml);
# an empty pair is a vehicle that never connected.
TLS_POSTURES = (
    ("MLKEM768", "ecdsa_secp256r1_sha256"),
    ("MLKEM768", "mldsa65"),
    ("X25519MLKEM768", "ecdsa_secp256r1_sha256"),
    ("MLKEM1024", "mldsa87"),
    ("MLKEM512", "mldsa44"),
    ("", ""),
)
# The share of ECUs still on the registry's default version; the others run a later release.
DEFAULT_VERSION_SHARE = 0.6
LATER_RELEASES = ("2.0.0", "2.1.0", "2.1.1", "3.0.0-rc.1")


@dataclass(frozen=True)
class SeedResult:
    vehicles: int
    ecus: int
    seconds: float


def _pick_weighted(rng: random.Random, choices: tuple[tuple[Any, float], ...]) -> Any:
    point, total = rng.random(), 0.0
    for value, weight in choices:
        total += weight
        if point < total:
            return value
    return choices[-1][0]


def _next_serial() -> int:
    last = (
        Vehicle.objects.filter(vin__startswith=SYNTHETIC_PREFIX)
        .order_by("-vin")
        .values_list("vin", flat=True)
        .first()
    )
    return int(last[len(SYNTHETIC_PREFIX) :]) + 1 if last else 1


def _vehicle(rng: random.Random, serial: int, now: datetime.datetime) -> Vehicle:
    group, signature = rng.choice(TLS_POSTURES)
    online = bool(group) and rng.random() < 0.3
    return Vehicle(
        vin=f"{SYNTHETIC_PREFIX}{serial:012d}",
        model_name=rng.choice(MODELS),
        model_year=rng.choice(YEARS),
        vmg_id=f"VMG-{serial:08d}",
        status=_pick_weighted(rng, STATUSES),
        is_online=online,
        last_seen_at=now - datetime.timedelta(minutes=rng.randrange(0, 60 * 24 * 30)),
        tls_group=group,
        tls_signature_algorithm=signature,
        tls_version="TLSv1.3" if group else "",
        tls_seen_at=now if group else None,
        certificate_not_after=now + datetime.timedelta(days=rng.randrange(-30, 730)),
    )


class _EcuWriter:
    """ECU rows for one batch: COPY on PostgreSQL (10-20x faster than INSERT), else bulk_create."""

    COLUMNS = (
        "vehicle_id",
        "ecu_id",
        "ecu_type_id",
        "zonal_gateway_id",
        "hardware_version",
        "sw_version",
        "sw_version_key",
        "target_sw_version",
        "doip_logical_address",
        "update_priority",
        "part_number",
        "supplier",
        "serial_number",
        "updated_at",
    )

    def __init__(self, now: datetime.datetime) -> None:
        self.now = now
        self.keys: dict[str, str] = {}
        self.copy = connection.vendor == "postgresql"

    def key(self, version: str) -> str:
        if version not in self.keys:
            self.keys[version] = SemVer.coerce(version).sort_key
        return self.keys[version]

    def write(self, rows: Iterator[tuple[Any, ...]]) -> int:
        if self.copy:
            return self._copy(rows)
        ecus = [Ecu(**dict(zip(self.COLUMNS, row, strict=True))) for row in rows]
        Ecu.objects.bulk_create(ecus, batch_size=2000)
        return len(ecus)

    def _copy(self, rows: Iterator[tuple[Any, ...]]) -> int:
        count = 0
        statement = f"COPY {Ecu._meta.db_table} ({', '.join(self.COLUMNS)}) FROM STDIN"
        with connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        return count


def _ecu_rows(
    rng: random.Random,
    writer: _EcuWriter,
    vehicles: list[Vehicle],
    gateways: dict[tuple[int, int], int],
    slots: list[RegistryEcu],
) -> Iterator[tuple[Any, ...]]:
    for vehicle in vehicles:
        for slot in slots:
            version = slot.default_sw_version
            if rng.random() >= DEFAULT_VERSION_SHARE:
                version = rng.choice(LATER_RELEASES)
            yield (
                vehicle.pk,
                slot.ecu_id,
                slot.ecu_type_id,
                gateways[(vehicle.pk, slot.zone_id)],
                slot.hardware_version,
                version,
                writer.key(version),
                "",
                slot.doip_logical_address,
                slot.update_priority,
                "",
                "",
                "",
                writer.now,
            )


def seed_fleet(
    *,
    vehicles: int,
    batch_size: int = 2000,
    seed: int = 0,
    force: bool = False,
    actor: Any = "system:seed_fleet",
    progress: Callable[[int, int, float], None] | None = None,
) -> SeedResult:
    """Add `vehicles` synthetic vehicles with their gateways and ECUs, batch by batch."""
    if vehicles < 1:
        raise DomainError("at least 1 vehicle", field="vehicles")
    if batch_size < 1:
        raise DomainError("at least 1 vehicle per batch", field="batch_size")
    real = Vehicle.objects.exclude(vin__startswith=SYNTHETIC_PREFIX).count()
    if real and not force:
        raise DomainError(
            f"the database holds {real} vehicles that are not synthetic; "
            "add --force to mix a synthetic fleet with them",
            field="force",
        )
    zones = list(RegistryZone.objects.order_by("zone_number"))
    slots = list(RegistryEcu.objects.order_by("ecu_id"))
    if not zones or not slots:
        raise DomainError("the ECU registry is empty: run `manage.py import_registry` first")
    rng = random.Random(seed)
    started = time.monotonic()
    now = timezone.now()
    writer = _EcuWriter(now)
    first, made, ecus = _next_serial(), 0, 0
    while made < vehicles:
        count = min(batch_size, vehicles - made)
        with transaction.atomic():
            batch = Vehicle.objects.bulk_create(
                [_vehicle(rng, first + made + n, now) for n in range(count)]
            )
            created = ZonalGateway.objects.bulk_create(
                ZonalGateway(
                    vehicle=vehicle,
                    gateway_id=zone.gateway_id,
                    zone_number=zone.zone_number,
                    name=zone.name,
                    doip_logical_address=zone.doip_logical_address,
                )
                for vehicle in batch
                for zone in zones
            )
            gateways = {
                (gateway.vehicle_id, zone.pk): gateway.pk
                for gateway, zone in zip(created, [z for _ in batch for z in zones], strict=True)
            }
            ecus += writer.write(_ecu_rows(rng, writer, batch, gateways, slots))
        made += count
        if progress is not None:
            progress(made, vehicles, time.monotonic() - started)
    with transaction.atomic():
        record_event(
            action="fleet.seeded",
            actor=actor,
            object_type="fleet",
            details={
                "vehicles": made,
                "ecus": ecus,
                "first_vin": f"{SYNTHETIC_PREFIX}{first:012d}",
            },
        )
    if connection.vendor == "postgresql" and connection.get_autocommit():
        with connection.cursor() as cursor:
            # Fresh statistics, so the planner knows the fleet's size, and a visibility map,
            # so the covering ECU index answers without the heap from the first list on.
            cursor.execute(f"VACUUM (ANALYZE) {Vehicle._meta.db_table}, {Ecu._meta.db_table}")
    return SeedResult(vehicles=made, ecus=ecus, seconds=time.monotonic() - started)
