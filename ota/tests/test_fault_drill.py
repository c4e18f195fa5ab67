"""The server tells the truth through crashes, a broker restart and a database outage.

Real processes only: two servers on one private PostgreSQL cluster, one Redis channel layer
and one private Mosquitto, each server as two `manage.py runota` processes with its roles split
(the listeners; the bridge and the workers), with reference vehicles in their own processes
(see ota/tests/fault_drill.py). FAULT_DRILL_VEHICLES sets the fleet size (default 40, see
docs/BENCHMARKS.md "Reliability" for why).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict

import pytest

from ota.tests.fault_drill import PG_BIN, Drill

pytestmark = [pytest.mark.slow]

VEHICLES = int(os.environ.get("FAULT_DRILL_VEHICLES", "40"))
REDIS_URL = os.environ.get("FAULT_DRILL_REDIS_URL", "redis://127.0.0.1:6379/13")


def _redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping())
    except redis.RedisError:
        return False


def test_a_campaign_through_crashes_and_outages_ends_in_the_vehicles_truth():
    missing = [
        name
        for name, present in (
            ("PostgreSQL 15 server binaries", (PG_BIN / "pg_ctl").exists()),
            ("mosquitto", bool(shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto"))),
            (f"Redis at {REDIS_URL}", _redis_answers()),
        )
        if not present
    ]
    # CI installs all three; a missing one is a broken environment, not a reason to pass.
    assert not missing, f"the fault drill needs {', '.join(missing)}"

    report = Drill(
        vehicles=VEHICLES,
        image_bytes=2 * 1024**2,
        outage_seconds=20,
        redis_url=REDIS_URL,
        shared_subscriptions=False,
        timeout=300,
        split_roles=True,
    ).run()

    summary = json.dumps(asdict(report), indent=1)
    print(summary)  # shown with the failure, or with -s
    assert [fault.name for fault in report.faults] == [
        "kill -9 runota a mid-download",
        "kill -9 runota b between download and install",
        "broker restart",
        "PostgreSQL stopped for 20 s",
        "PostgreSQL started again",
    ], summary
    # The first two faults hit vehicles in the middle of their updates.
    assert report.faults[0].states.get("downloading"), summary
    assert report.violations == [], summary
    assert sum(report.outcomes.values()) == VEHICLES, summary
    assert report.telemetry_acknowledged > 0 and report.reports_acknowledged > 0, summary
