"""Inventory benchmark: the fleet list and the version report at 1k, 10k and 100k vehicles,
against a trivial page of the same list in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ota_inventory_bench \\
        .venv/bin/python bench/inventory.py                      # 1k and 10k, about 2 minutes
    ... bench/inventory.py --sizes 1000,10000,100000 --write     # about 12 minutes

The database is emptied first, then `seed_fleet` grows one synthetic fleet (100 ECUs per
vehicle, as the registry defines) to each size in turn. At each size it counts the queries of
one list page (they must not grow with the fleet) and times, as medians of --repeat requests
through Django's full request path in-process: a trivial page (no filter, by VIN), a filtered
page (status, model, ECM version range), its next page by cursor, and the version report.
Without DATABASE_URL it runs on SQLite in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "inventory.md"

TRIVIAL = "/api/v1/vehicles?limit=50"
FILTERED = "/api/v1/vehicles?limit=50&status=active&model_name=Aurora&ecu=ECM&version=<2.0.0"
REPORT = "/api/v1/reports/versions?ecu=ECM"
# The goal: a filtered page of a 100k fleet within this factor of the trivial page.
GOAL = 2.0


def _configure(tmp: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")
    os.environ["OTA_VAR_DIR"] = str(tmp)
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def _fresh_database() -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    call_command("migrate", verbosity=0)
    call_command("import_registry", str(settings.ECU_REGISTRY_FILE), verbosity=0)


def _client() -> Any:
    from django.contrib.auth.models import Group, User
    from rest_framework.test import APIClient

    from core.roles import Role

    viewer = User.objects.create_user("bench-viewer")
    viewer.groups.add(Group.objects.get_or_create(name=Role.VIEWER)[0])
    client = APIClient(HTTP_HOST="localhost")
    client.force_authenticate(viewer)
    return client


def _get(client: Any, url: str) -> dict[str, Any]:
    response = client.get(url)
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}: {response.content[:200]!r}")
    return response.json()


def _median_ms(client: Any, url: str, repeat: int, max_seconds: float) -> float:
    _get(client, url)  # warm: plans cached, pages in memory
    times, started = [], time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        _get(client, url)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - started > max_seconds:
            break
    return statistics.median(times) * 1000


def _queries(client: Any, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        _get(client, url)
    return len(captured.captured_queries)


def measure(client: Any, size: int, repeat: int, max_seconds: float) -> dict[str, Any]:
    filtered = _get(client, FILTERED)
    second = filtered["next"] or FILTERED
    return {
        "vehicles": size,
        "matching": filtered["count"],
        "matching_exact": filtered.get("count_exact", True),
        "queries_trivial": _queries(client, TRIVIAL),
        "queries_filtered": _queries(client, FILTERED),
        "queries_second": _queries(client, second),
        "queries_report": _queries(client, REPORT),
        "trivial_ms": _median_ms(client, TRIVIAL, repeat, max_seconds),
        "filtered_ms": _median_ms(client, FILTERED, repeat, max_seconds),
        "second_ms": _median_ms(client, second, repeat, max_seconds),
        "report_ms": _median_ms(client, REPORT, repeat, max_seconds),
    }


def _write(rows: list[dict[str, Any]], seeding: list[tuple[int, float]]) -> str:
    from django.db import connection

    lines = [
        "# Inventory at fleet scale",
        "",
        f"Command: `{shlex.join(['.venv/bin/python', 'bench/inventory.py', *sys.argv[1:]])}`",
        f"Database: {connection.vendor}; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs; {platform.machine()}. Every vehicle has the 100 ECUs of the "
        "registry (a 100k fleet is 10 million ECU rows).",
        "Requests run in-process through Django's full request path, one at a time; times are "
        "medians. Trivial page: `" + TRIVIAL + "`. Filtered page: `" + FILTERED + "`. "
        "Report: `" + REPORT + "`. The list counts a filter on ECUs up to "
        "`vehicles.filters.ECU_COUNT_LIMIT` vehicles and then says `count_exact: false` "
        '("more than"), so matching shows that limit once the filter selects more.',
        "",
        "| vehicles | matching | queries per page (trivial / filtered / next / report) "
        "| trivial ms | filtered ms | next page ms | report ms | filtered / trivial "
        "| report / trivial |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['vehicles']:,} | {'' if row['matching_exact'] else 'more than '}"
            f"{row['matching']:,} | {row['queries_trivial']} / "
            f"{row['queries_filtered']} / {row['queries_second']} / {row['queries_report']} | "
            f"{row['trivial_ms']:.1f} | {row['filtered_ms']:.1f} | {row['second_ms']:.1f} | "
            f"{row['report_ms']:.1f} | {row['filtered_ms'] / row['trivial_ms']:.2f}x | "
            f"{row['report_ms'] / row['trivial_ms']:.2f}x |"
        )
    largest = rows[-1]
    ratio = largest["filtered_ms"] / largest["trivial_ms"]
    verdict = "met" if ratio <= GOAL else "missed"
    lines += [
        "",
        f"Goal: a filtered page within {GOAL:.0f}x of the trivial page at the largest size: "
        f"{ratio:.2f}x at {largest['vehicles']:,} vehicles, {verdict}.",
        "",
        "Seeding (`manage.py seed_fleet`), cumulative: "
        + ", ".join(f"{size:,} vehicles in {seconds:.0f} s" for size, seconds in seeding)
        + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="fleet sizes, ascending")
    parser.add_argument("--repeat", type=int, default=30, help="requests per timed loop")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time bound per loop")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if sizes != sorted(sizes) or sizes[0] < 1:
        parser.error("--sizes: positive and ascending, e.g. 1000,10000,100000")
    with tempfile.TemporaryDirectory(prefix="ota-bench-inventory-") as tmp:
        _configure(Path(tmp))
        from vehicles.seeding import seed_fleet

        _fresh_database()
        client = _client()
        rows, seeding, have, seed_seconds = [], [], 0, 0.0
        for size in sizes:
            started = time.monotonic()
            seed_fleet(vehicles=size - have, batch_size=5000)
            seed_seconds += time.monotonic() - started
            have = size
            seeding.append((size, seed_seconds))
            rows.append(measure(client, size, args.repeat, args.max_seconds))
            print(rows[-1], flush=True)
        report = _write(rows, seeding)
        print(report)
        if args.write:
            RESULTS.write_text(report)


if __name__ == "__main__":
    main()
