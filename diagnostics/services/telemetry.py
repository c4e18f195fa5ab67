from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.events import FLEET_GROUP, publish_event, vehicle_group
from diagnostics.choices import PresenceState
from diagnostics.models import TelemetryLatest, TelemetrySample
from diagnostics.timestamps import parse_timestamp
from vehicles.models import Vehicle

TELEMETRY_EVENT_INTERVAL_S = 1.0
# Rows per INSERT statement: 5 parameters each stays far below SQLite's parameter limit.
INSERT_CHUNK = 1000
LAST_SEEN_RESOLUTION = timedelta(seconds=1)


def record_telemetry(*, vehicle: Vehicle, report: dict[str, Any]) -> int:
    """Store one telemetry message (schema-checked by the caller)."""
    return record_telemetry_batch(reports=[(vehicle, report)])


@transaction.atomic(durable=True)
def record_telemetry_batch(*, reports: Sequence[tuple[Vehicle, dict[str, Any]]]) -> int:
    """Store many telemetry messages in one transaction; returns how many it handled.

    The history keeps every message once (a QoS 1 redelivery hits the unique constraint and is
    skipped); the latest row of each vehicle keeps the newest value of every signal.
    """
    if not reports:
        return 0
    now = timezone.now()
    parsed = [
        (vehicle, parse_timestamp(report["timestamp"]), int(report["seq"]), report["values"])
        for vehicle, report in reports
    ]
    _insert_samples(parsed, now)
    by_vehicle: dict[int, list[tuple[datetime, int, dict[str, Any]]]] = {}
    vins: dict[int, str] = {}
    for vehicle, at, seq, values in parsed:
        by_vehicle.setdefault(vehicle.pk, []).append((at, seq, values))
        vins[vehicle.pk] = vehicle.vin
    _merge_latest(by_vehicle, now)
    # A vehicle streaming telemetry is written at most once a second, not once per batch.
    Vehicle.objects.filter(pk__in=by_vehicle).filter(
        Q(is_online=False)
        | Q(last_seen_at__isnull=True)
        | Q(last_seen_at__lt=now - LAST_SEEN_RESOLUTION)
    ).update(last_seen_at=now, is_online=True)
    for vehicle_id, rows in by_vehicle.items():
        if not _event_due(vehicle_id):
            continue
        at, seq, values = max(rows, key=lambda r: (r[0], r[1]))
        publish_event(
            vehicle_group(vins[vehicle_id]),
            {
                "kind": "telemetry",
                "vin": vins[vehicle_id],
                "seq": seq,
                "reported_at": at.isoformat(),
                "values": values,
            },
        )
    return len(parsed)


def _insert_samples(
    parsed: list[tuple[Vehicle, datetime, int, dict[str, Any]]], now: datetime
) -> None:
    """Append history rows, skipping messages already stored (QoS 1 redelivery).

    This is the hottest write of the server: one multi-row INSERT of plain parameters is
    several times faster than a model instance per message for bulk_create.
    """
    ops = connection.ops
    table = connection.ops.quote_name(TelemetrySample._meta.db_table)
    received = ops.adapt_datetimefield_value(now)
    rows = [
        (v.pk, seq, ops.adapt_datetimefield_value(at), received, json.dumps(values))
        for v, at, seq, values in parsed
    ]
    columns = f"vehicle_id, seq, reported_at, received_at, {ops.quote_name('values')}"
    conflict = "ON CONFLICT (vehicle_id, reported_at, seq) DO NOTHING"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Five array parameters instead of five per row: the driver does not have to
            # rewrite a statement with thousands of placeholders for every batch.
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT * FROM unnest("
                "%s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::jsonb[]"
                f") {conflict}",
                [list(column) for column in zip(*rows, strict=True)],
            )
            return
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            placeholders = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {placeholders} {conflict}",
                [value for row in chunk for value in row],
            )


_last_event: dict[int, float] = {}


def _event_due(vehicle_id: int) -> bool:
    """At most one live telemetry event per vehicle and second: a dashboard shows no more."""
    now = time.monotonic()
    if now - _last_event.get(vehicle_id, 0.0) < TELEMETRY_EVENT_INTERVAL_S:
        return False
    _last_event[vehicle_id] = now
    return True


def _merge_latest(
    by_vehicle: dict[int, list[tuple[datetime, int, dict[str, Any]]]], now: datetime
) -> None:
    # Lock the latest rows so two workers merging the same vehicle do not lose signals.
    existing = {
        row.vehicle_id: row
        # Locks are taken in vehicle order, so concurrent workers cannot deadlock on them.
        for row in TelemetryLatest.objects.select_for_update()
        .filter(vehicle_id__in=by_vehicle)
        .order_by("vehicle_id")
    }
    to_create, to_update = [], []
    for vehicle_id, rows in by_vehicle.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        latest = existing.get(vehicle_id)
        if latest is None:
            latest = TelemetryLatest(
                vehicle_id=vehicle_id, values={}, seq=-1, reported_at=rows[0][0]
            )
            to_create.append(latest)
        else:
            to_update.append(latest)
        for at, seq, values in rows:
            if (at, seq) >= (latest.reported_at, latest.seq):
                latest.values = {**latest.values, **values}
                latest.reported_at, latest.seq = at, seq
            else:
                # An older message only fills in signals the newer ones did not carry.
                latest.values = {**values, **latest.values}
        latest.received_at = now
    TelemetryLatest.objects.bulk_create(to_create)
    if to_update:
        # Plain executemany: bulk_update's CASE expressions cost more than the writes here.
        ops = connection.ops
        table = ops.quote_name(TelemetryLatest._meta.db_table)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET {ops.quote_name('values')} = %s, seq = %s, "
                "reported_at = %s, received_at = %s WHERE id = %s",
                [
                    (
                        json.dumps(row.values),
                        row.seq,
                        ops.adapt_datetimefield_value(row.reported_at),
                        ops.adapt_datetimefield_value(row.received_at),
                        row.pk,
                    )
                    for row in to_update
                ],
            )


@transaction.atomic(durable=True)
def record_presence(
    *, vehicle: Vehicle, state: str, reported_at: datetime | None = None, reason: str = ""
) -> Vehicle:
    """Apply an online/offline message (a vehicle's own or its last will sent by the broker)."""
    locked = Vehicle.objects.select_for_update().get(pk=vehicle.pk)
    online = state == PresenceState.ONLINE
    fields = ["is_online"]
    locked.is_online = online
    if online:
        locked.last_seen_at = timezone.now()
        fields.append("last_seen_at")
    locked.save(update_fields=fields)
    event = {
        "kind": "presence",
        "vin": locked.vin,
        "state": state,
        "reason": reason,
        "last_seen_at": locked.last_seen_at.isoformat() if locked.last_seen_at else None,
    }
    publish_event(vehicle_group(locked.vin), event)
    publish_event(FLEET_GROUP, event)
    return locked


@transaction.atomic(durable=True)
def prune_telemetry(*, older_than: timedelta, keep_per_vehicle: int | None = None) -> int:
    """Delete history older than `older_than` and, if given, beyond the newest N per vehicle.

    The latest-values row of each vehicle is kept whatever its age.
    """
    cutoff = timezone.now() - older_than
    deleted, _ = TelemetrySample.objects.older_than(cutoff).delete()
    if keep_per_vehicle is not None:
        extra = _delete_beyond(keep_per_vehicle)
        deleted += extra
    return deleted


def _delete_beyond(keep: int) -> int:
    """Delete each vehicle's history beyond its newest `keep` messages, in bounded chunks."""
    total = 0
    vehicle_ids = list(TelemetrySample.objects.values_list("vehicle_id", flat=True).distinct())
    for vehicle_id in vehicle_ids:
        newest_first = TelemetrySample.objects.filter(vehicle_id=vehicle_id).order_by(
            "-reported_at", "-seq"
        )
        while doomed := list(newest_first.values_list("pk", flat=True)[keep : keep + 10_000]):
            count, _ = TelemetrySample.objects.filter(pk__in=doomed).delete()
            total += count
    return total
