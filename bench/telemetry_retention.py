"""Telemetry retention benchmark: pruning the oldest days of history partitioned by day (the
day tables are dropped) against deleting the same rows from one plain table, in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ota_bench_retention \\
        .venv/bin/python bench/telemetry_retention.py --days 8 --rows-per-day 250000

Both tables get the same synthetic history: --vehicles vehicles, --rows-per-day messages a
day over --days days. The partitioned table is pruned by `prune_telemetry` (what
`manage.py prune_telemetry` runs); the plain one, created LIKE it with the same indexes, by the
DELETE the server ran before partitioning. Each prunes everything older than --keep-days.
Rows are bounded by --max-rows; the database is created if missing and emptied first.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "retention.md"
PLAIN = "bench_telemetry_plain"


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must name a PostgreSQL database: only PostgreSQL partitions")
    import psycopg
    from psycopg import sql

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _fill(cursor, table: str, vehicle_ids: list[int], days: int, per_day: int) -> None:
    """`per_day` messages a day for `days` days ending now, spread over the vehicles."""
    cursor.execute(
        f'INSERT INTO {table} (seq, reported_at, received_at, "values", vehicle_id) '
        'SELECT n, at, at, \'{"speed_kph": 50, "battery_percent": 80}\'::jsonb, '
        "(%s::bigint[])[1 + n %% %s] FROM ("
        "  SELECT n, now() - make_interval(secs => (n::float8 * %s * 86400) / %s) AS at "
        "  FROM generate_series(1, %s) AS n) AS rows",
        [vehicle_ids, len(vehicle_ids), days, days * per_day, days * per_day],
    )


def _settle(connection) -> None:
    """Write out what the fill left dirty, so neither measurement pays for the other's I/O."""
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")


def _size(connection, table: str) -> int:
    """Bytes on disk of a table with its indexes (a partitioned one summed over its days)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) "
            "FROM pg_partition_tree(%s::regclass)",
            [table],
        )
        return int(cursor.fetchone()[0])


def _per_million(seconds: float, rows: int) -> str:
    return f"{seconds / rows * 1e6:.2f} s" if rows else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=100)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--rows-per-day", type=int, default=250_000)
    parser.add_argument("--keep-days", type=int, default=4)
    parser.add_argument("--max-rows", type=int, default=10_000_000)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    if not 1 <= args.keep_days < args.days <= 60:
        parser.error("need 1 <= --keep-days < --days <= 60")
    if not 1 <= args.days * args.rows_per_day <= args.max_rows:
        parser.error(f"--days x --rows-per-day must be 1..{args.max_rows}")
    _setup()
    from django.db import connection
    from django.utils import timezone

    from diagnostics import partitions
    from diagnostics.models import TelemetrySample
    from diagnostics.services import prune_telemetry
    from vehicles.models import Vehicle

    today = timezone.now().date()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {PLAIN}")
        cursor.execute(f"TRUNCATE {partitions.TABLE}")
        partitions.ensure_days(cursor, today - timedelta(days=args.days + 1), today)
        cursor.execute(
            f"CREATE TABLE {PLAIN} (LIKE {partitions.TABLE} INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
    Vehicle.objects.filter(vin__startswith="BENCHRET").delete()
    Vehicle.objects.bulk_create(
        Vehicle(vin=f"BENCHRET{n:09d}", model_name="Aurora", model_year=2026)
        for n in range(args.vehicles)
    )
    ids = list(Vehicle.objects.filter(vin__startswith="BENCHRET").values_list("pk", flat=True))
    total = args.days * args.rows_per_day
    print(f"filling {total:,} rows into each table ...", flush=True)
    with connection.cursor() as cursor:
        for table in (partitions.TABLE, PLAIN):
            _fill(cursor, table, ids, args.days, args.rows_per_day)
            # Old history has long been vacuumed (hint bits set) by the time it is pruned.
            cursor.execute(f"VACUUM ANALYZE {table}")
    cutoff = timedelta(days=args.keep_days)
    size_before = {table: _size(connection, table) for table in (partitions.TABLE, PLAIN)}

    _settle(connection)
    start = time.perf_counter()
    pruned = prune_telemetry(older_than=cutoff, actor="system:bench")
    partitioned_s = time.perf_counter() - start

    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {PLAIN} WHERE received_at < %s", [timezone.now() - cutoff])
        deleted = cursor.rowcount
    plain_s = time.perf_counter() - start

    freed = {table: size_before[table] - _size(connection, table) for table in size_before}
    kept = TelemetrySample.objects.count()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {PLAIN}")
        kept_plain = cursor.fetchone()[0]
        cursor.execute(f"DROP TABLE {PLAIN}")
    plain_rate = plain_s / deleted if deleted else 0.0
    partitioned_rate = partitioned_s / pruned if pruned else 0.0
    ratio = plain_rate / partitioned_rate if partitioned_rate else float("inf")
    mib = 1024 * 1024
    command = " ".join(
        [
            f"DATABASE_URL={os.environ['DATABASE_URL']}",
            ".venv/bin/python bench/telemetry_retention.py",
            shlex.join(sys.argv[1:]),
        ]
    ).strip()
    report = f"""# Telemetry retention

Command: `{command}`

- Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()};
  PostgreSQL {connection.pg_version // 10000}
- History: {total:,} messages from {args.vehicles} vehicles over {args.days} days; everything
  older than {args.keep_days} days is pruned

| history table | rows pruned | rows kept | prune time | per million rows | speed-up | disk freed at once |
|---|---:|---:|---:|---:|---:|---:|
| one plain table, `DELETE` (reference) | {deleted:,} | {kept_plain:,} | {plain_s:.2f} s | {_per_million(plain_s, deleted)} | 1.0x | {freed[PLAIN] / mib:.0f} MiB |
| partitioned by day, `prune_telemetry` | {pruned:,} | {kept:,} | {partitioned_s:.2f} s | {_per_million(partitioned_s, pruned)} | {ratio:.1f}x | {freed[partitions.TABLE] / mib:.0f} MiB |

The partitioned history prunes whole days only, so it keeps up to a day more than the plain
table, which is cut at the exact cutoff; speed-up compares the time per million rows. Dropping
a day's table returns its disk at once; the delete leaves dead rows in the table and its
indexes until a vacuum, and writes every deleted row to the WAL.
"""
    print(report)
    Path(args.output).write_text(report)


if __name__ == "__main__":
    main()
