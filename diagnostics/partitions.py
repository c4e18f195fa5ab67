"""Telemetry history partitioned by day on PostgreSQL.

The history table is range-partitioned on `reported_at` (the vehicle's own timestamp, the key
of the de-duplicating unique constraint, which a partitioned table must include): one table a
day, named `<table>_pYYYYMMDD`, and a default partition for timestamps no day table covers.
Retention drops whole days instead of deleting rows: a day goes once all of it is older
than the cutoff, so up to one day more than asked for is kept. These helpers speak SQL on a cursor and
know no model, so the migration that partitions the table uses them as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

TABLE = "diagnostics_telemetrysample"
DEFAULT_PARTITION = f"{TABLE}_default"
_DAY_NAME = re.compile(rf"^{TABLE}_p(\d{{8}})$")


@dataclass(frozen=True)
class DayPartition:
    name: str
    day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.day, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)


def day_partition(day: date) -> DayPartition:
    return DayPartition(f"{TABLE}_p{day:%Y%m%d}", day)


def is_partitioned(cursor: Any) -> bool:
    cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [TABLE])
    row = cursor.fetchone()
    return row is not None and row[0] == "p"


def day_partitions(cursor: Any) -> list[DayPartition]:
    """The day tables attached to the history table, oldest first."""
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s)",
        [TABLE],
    )
    found = []
    for (name,) in cursor.fetchall():
        if match := _DAY_NAME.match(name):
            found.append(DayPartition(name, date.fromisoformat(match[1])))
    return sorted(found, key=lambda p: p.day)


def ensure_day(cursor: Any, day: date) -> bool:
    """Attach the table for `day` if it is missing; True when it was created.

    Rows of that day already in the default partition move into the new table first: a
    partition cannot be attached while the default one holds rows in its range.
    """
    partition = day_partition(day)
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [partition.name])
    if cursor.fetchone()[0]:
        return False
    cursor.execute(f"CREATE TABLE {partition.name} (LIKE {TABLE} INCLUDING DEFAULTS)")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} "
        "WHERE reported_at >= %s AND reported_at < %s RETURNING *) "
        f"INSERT INTO {partition.name} SELECT * FROM moved",
        [partition.start, partition.end],
    )
    cursor.execute(
        f"ALTER TABLE {TABLE} ATTACH PARTITION {partition.name} FOR VALUES FROM (%s) TO (%s)",
        [partition.start, partition.end],
    )
    return True


def ensure_days(cursor: Any, first: date, last: date) -> int:
    """Attach a table for every day from `first` to `last`; returns how many were created."""
    created = 0
    day = first
    while day <= last:
        created += ensure_day(cursor, day)
        day += timedelta(days=1)
    return created


def drop_days_before(cursor: Any, cutoff: datetime) -> int:
    """Drop every day table that ends at or before `cutoff`; returns the rows they held."""
    dropped_rows = 0
    # A table with deferred foreign-key checks still pending cannot be dropped: run them now.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for partition in day_partitions(cursor):
        if partition.end > cutoff:
            break
        cursor.execute(f"SELECT count(*) FROM {partition.name}")
        dropped_rows += cursor.fetchone()[0]
        cursor.execute(f"DROP TABLE {partition.name}")
    return dropped_rows


def delete_from_default_before(cursor: Any, cutoff: datetime) -> int:
    """Delete the default partition's rows received before `cutoff`; returns how many."""
    cursor.execute(f"DELETE FROM {DEFAULT_PARTITION} WHERE received_at < %s", [cutoff])
    return cursor.rowcount
