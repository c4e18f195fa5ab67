from __future__ import annotations

import json
import time
import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import record_event
from core.events import FLEET_GROUP, publish_event, vehicle_group
from diagnostics import partitions
from diagnostics.choices import PresenceState
from diagnostics.models import TelemetryLatest, TelemetrySample
from diagnostics.timestamps import parse_timestamp
from vehicles.models import Vehicle

TELEMETRY_EVENT_INTERVAL_S = 1.0
# Rows per INSERT statement: 5 parameters each stays far below SQLite's parameter limit.
INSERT_CHUNK = 1000
LAST_SEEN_RESOLUTION = timedelta(seconds=1)
# Day tables kept ready ahead of today; a timestamp beyond them lands in the default partition.
TELEMETRY_DAYS_AHEAD = 7


class VehicleKey(NamedTuple):
    """What telemetry storage needs of a vehicle; the ingest builds these without model rows."""

    pk: int
    vin: str


# (vehicle id, reported at, seq, values)
Parsed = tuple[int, datetime, int, dict[str, Any]]


def record_telemetry(*, vehicle: Vehicle | VehicleKey, report: dict[str, Any]) -> int:
    """Store one telemetry message (schema-checked by the caller)."""
    return record_telemetry_batch(reports=[(vehicle, report)])


@transaction.atomic(durable=True)
def record_telemetry_batch(
    *, reports: Sequence[tuple[Vehicle | VehicleKey, dict[str, Any]]]
) -> int:
    """Store many telemetry messages in one transaction; returns how many it handled.

    The history keeps every message once (a QoS 1 redelivery hits the unique constraint and is
    skipped); the latest row of each vehicle keeps the newest value of every signal.
    """
    if not reports:
        return 0
    now = timezone.now()
    parsed: list[Parsed] = []
    vins: dict[int, str] = {}
    for vehicle, report in reports:
        parsed.append(
            (vehicle.pk, parse_timestamp(report["timestamp"]), int(report["seq"]), report["values"])
        )
        vins[vehicle.pk] = vehicle.vin
    by_vehicle: dict[int, list[tuple[datetime, int, dict[str, Any]]]] = {}
    for vehicle_id, at, seq, values in parsed:
        by_vehicle.setdefault(vehicle_id, []).append((at, seq, values))
    if connection.vendor == "postgresql":
        _store_postgresql(parsed, by_vehicle, now)
    else:
        _insert_samples(parsed, now)
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


def telemetry_synchronous_commit() -> bool:
    """Whether a telemetry transaction waits for its WAL flush (settings.TELEMETRY_SYNCHRONOUS_COMMIT)."""
    return getattr(settings, "TELEMETRY_SYNCHRONOUS_COMMIT", True)


# PostgreSQL --------------------------------------------------------------------------------
#
# The hottest write of the server. Django's psycopg cursors bind parameters on the client,
# which for a batch means quoting thousands of values in Python; here the history goes in with
# binary COPY and the latest values with one upsert of binary array parameters, both on a
# server-binding cursor of the same connection (so inside the same transaction).

_STAGE = "ota_telemetry_stage"
# Raw connections whose session already has the staging table (it lives as long as the session).
_staged: weakref.WeakSet[Any] = weakref.WeakSet()


def _store_postgresql(
    parsed: list[Parsed],
    by_vehicle: dict[int, list[tuple[datetime, int, dict[str, Any]]]],
    now: datetime,
) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    connection.ensure_connection()
    raw = connection.connection
    history = connection.ops.quote_name(TelemetrySample._meta.db_table)
    latest_table = connection.ops.quote_name(TelemetryLatest._meta.db_table)
    try:
        with psycopg.Cursor(raw) as cursor:
            if not telemetry_synchronous_commit():
                # Opt-in, and for this transaction only (SET LOCAL): telemetry history is the
                # one kind of data where losing the last few hundred ms of commits to a
                # database server crash is acceptable; the database stays consistent. OTA
                # status and diagnostics never do this. Trade-off: docs/PROTOCOL.md.
                cursor.execute("SET LOCAL synchronous_commit = off")
            if raw not in _staged:
                # Per session, private to it; ON COMMIT DELETE ROWS is a second guard that no
                # row outlives its batch (PostgreSQL skips it in transactions that never
                # touched a temporary table).
                cursor.execute(
                    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} "
                    '(vehicle_id bigint, seq bigint, reported_at timestamptz, "values" jsonb) '
                    "ON COMMIT DELETE ROWS"
                )
                transaction.on_commit(lambda: _staged.add(raw))
            # COPY cannot skip duplicates, so it fills the staging table and one statement
            # moves the rows over (leaving the stage empty), skipping QoS 1 redeliveries. The
            # ORDER BY makes two workers take unique-index locks in the same order.
            with cursor.copy(
                f'COPY {_STAGE} (vehicle_id, seq, reported_at, "values") FROM STDIN (FORMAT BINARY)'
            ) as copy:
                copy.set_types(["int8", "int8", "timestamptz", "jsonb"])
                for vehicle_id, at, seq, values in parsed:
                    copy.write_row((vehicle_id, seq, at, values))
            cursor.execute(
                f"WITH staged AS (DELETE FROM {_STAGE} RETURNING *) "
                f'INSERT INTO {history} (vehicle_id, seq, reported_at, received_at, "values") '
                'SELECT vehicle_id, seq, reported_at, %b, "values" FROM staged '
                "ORDER BY vehicle_id, reported_at, seq "
                "ON CONFLICT (vehicle_id, reported_at, seq) DO NOTHING",
                [now],
                prepare=True,
            )
            ids = sorted(by_vehicle)
            # Locks are taken in vehicle order, so concurrent workers cannot deadlock on them.
            cursor.execute(
                f'SELECT vehicle_id, "values"::text, seq, reported_at FROM {latest_table} '
                "WHERE vehicle_id = ANY(%b::bigint[]) ORDER BY vehicle_id FOR UPDATE",
                [ids],
                prepare=True,
            )
            existing = {
                vehicle_id: (json.loads(values), seq, at)
                for vehicle_id, values, seq, at in cursor.fetchall()
            }
            merged = [
                (vehicle_id, *_merge_rows(existing.get(vehicle_id), by_vehicle[vehicle_id]))
                for vehicle_id in ids
            ]
            # One statement for every vehicle of the batch. A row missing above may have been
            # created by another worker since: then the conflict branch merges the two in SQL,
            # the newer message's signals winning.
            cursor.execute(
                f'INSERT INTO {latest_table} AS t (vehicle_id, "values", seq, reported_at, '
                "received_at) SELECT v.*, %b FROM unnest("
                "%b::bigint[], %b::jsonb[], %b::bigint[], %b::timestamptz[]) AS v "
                "ON CONFLICT (vehicle_id) DO UPDATE SET "
                '"values" = CASE WHEN (EXCLUDED.reported_at, EXCLUDED.seq) >= '
                '(t.reported_at, t.seq) THEN t."values" || EXCLUDED."values" '
                'ELSE EXCLUDED."values" || t."values" END, '
                "seq = CASE WHEN (EXCLUDED.reported_at, EXCLUDED.seq) >= (t.reported_at, t.seq) "
                "THEN EXCLUDED.seq ELSE t.seq END, "
                "reported_at = GREATEST(EXCLUDED.reported_at, t.reported_at), "
                "received_at = EXCLUDED.received_at",
                [
                    now,
                    [row[0] for row in merged],
                    [Jsonb(row[1]) for row in merged],
                    [row[2] for row in merged],
                    [row[3] for row in merged],
                ],
                prepare=True,
            )
    except Exception:
        # The staging table may have gone with a rolled-back or reset session: check again.
        _staged.discard(raw)
        raise


def _merge_rows(
    latest: tuple[dict[str, Any], int, datetime] | None,
    rows: list[tuple[datetime, int, dict[str, Any]]],
) -> tuple[dict[str, Any], int, datetime]:
    """Merge a vehicle's messages into its latest values: newest value of every signal."""
    rows.sort(key=lambda r: (r[0], r[1]))
    values, seq, at = latest if latest is not None else ({}, -1, rows[0][0])
    for row_at, row_seq, row_values in rows:
        if (row_at, row_seq) >= (at, seq):
            values = {**values, **row_values}
            at, seq = row_at, row_seq
        else:
            # An older message only fills in signals the newer ones did not carry.
            values = {**row_values, **values}
    return values, seq, at


# SQLite and others -------------------------------------------------------------------------


def _insert_samples(parsed: list[Parsed], now: datetime) -> None:
    """Append history rows, skipping messages already stored (QoS 1 redelivery)."""
    ops = connection.ops
    table = ops.quote_name(TelemetrySample._meta.db_table)
    received = ops.adapt_datetimefield_value(now)
    # Messages of one batch mostly share a handful of timestamps (vehicles report each second).
    adapted: dict[datetime, Any] = {}
    rows = []
    for vehicle_id, at, seq, values in parsed:
        if at not in adapted:
            adapted[at] = ops.adapt_datetimefield_value(at)
        rows.append((vehicle_id, seq, adapted[at], received, json.dumps(values)))
    columns = f"vehicle_id, seq, reported_at, received_at, {ops.quote_name('values')}"
    conflict = "ON CONFLICT (vehicle_id, reported_at, seq) DO NOTHING"
    if connection.vendor == "sqlite":
        # The driver's own executemany: one prepared statement, bound in C. Django's cursor
        # would rewrite a statement with thousands of placeholders for every batch.
        connection.ensure_connection()
        connection.connection.executemany(
            f"INSERT INTO {table} ({columns}) VALUES (?, ?, ?, ?, ?) {conflict}", rows
        )
        return
    with connection.cursor() as cursor:
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
        latest = existing.get(vehicle_id)
        current = None if latest is None else (latest.values, latest.seq, latest.reported_at)
        values, seq, at = _merge_rows(current, rows)
        if latest is None:
            latest = TelemetryLatest(vehicle_id=vehicle_id)
            to_create.append(latest)
        else:
            to_update.append(latest)
        latest.values, latest.seq, latest.reported_at, latest.received_at = values, seq, at, now
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
def prune_telemetry(
    *, older_than: timedelta, keep_per_vehicle: int | None = None, actor: Any = None
) -> int:
    """Delete history older than `older_than` and, if given, beyond the newest N per vehicle.

    On PostgreSQL the history goes by whole days (their tables are dropped once all of a day is
    older than the cutoff, so up to a day more is kept); elsewhere, and in the default
    partition, row by row. The latest-values row of each vehicle is kept whatever its age.
    """
    cutoff = timezone.now() - older_than
    if connection.vendor == "postgresql" and _partitioned():
        with connection.cursor() as cursor:
            deleted = partitions.drop_days_before(cursor, cutoff)
            deleted += partitions.delete_from_default_before(cursor, cutoff)
    else:
        deleted, _ = TelemetrySample.objects.older_than(cutoff).delete()
    if keep_per_vehicle is not None:
        deleted += _delete_beyond(keep_per_vehicle)
    if deleted:
        record_event(
            action="telemetry.pruned",
            actor=actor,
            object_type="telemetry",
            details={
                "deleted": deleted,
                "older_than": cutoff.isoformat(),
                "keep_per_vehicle": keep_per_vehicle,
            },
        )
    return deleted


@transaction.atomic(durable=True)
def ensure_telemetry_partitions(*, days_ahead: int = TELEMETRY_DAYS_AHEAD) -> int:
    """Attach day tables from today to `days_ahead` days on; returns how many were created.

    Only PostgreSQL partitions the history; elsewhere this does nothing.
    """
    if connection.vendor != "postgresql" or not _partitioned():
        return 0
    today = timezone.now().date()
    with connection.cursor() as cursor:
        return partitions.ensure_days(cursor, today, today + timedelta(days=days_ahead))


def _partitioned() -> bool:
    with connection.cursor() as cursor:
        return partitions.is_partitioned(cursor)


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
