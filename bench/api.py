"""API benchmarks: update checks per second for 100-ECU vehicles against a trivial endpoint of the
same server in the same run, and the time to fan a campaign out to 10,000 vehicles.

    .venv/bin/python bench/api.py                 # SQLite in a temporary directory
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ota_bench .venv/bin/python bench/api.py

Requests go through Django's full request path in-process (middleware, DRF authentication from
the mutual-TLS identity, throttling, views, database), not through the TLS listener: the
numbers are the application's cost per request, separate from the handshake cost measured by
bench/tls_handshake.py. Every loop is bounded by --requests and --max-seconds.
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "api.md"


def _configure(tmp: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")
    os.environ["OTA_VAR_DIR"] = str(tmp)
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}")
    # The throttle would cap the loop at the production rate; it stays in the request path.
    os.environ["OTA_VEHICLE_THROTTLE"] = "100000000/minute"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def _fresh_database() -> None:
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "postgresql":
        # A dedicated database: start from empty tables so runs are comparable.
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    call_command("migrate", verbosity=0)


def _vin(n: int) -> str:
    return f"1HGCM8263{n:08d}"


def _release(code: str, version: str, hardware: tuple[str, ...]) -> object:
    import io

    from ecus.models import EcuType
    from firmware.services import upload_firmware

    EcuType.objects.get_or_create(code=code, defaults={"name": code})
    payload = os.urandom(64 * 1024)
    return upload_firmware(
        io.BytesIO(payload),
        ecu_type_code=code,
        version=version,
        size=len(payload),
        hardware_versions=hardware,
    ).firmware


def _timed_loop(call: Callable[[int], int], requests: int, max_seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    started = time.perf_counter()
    for index in range(requests):
        t0 = time.perf_counter()
        status = call(index)
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            raise SystemExit(f"request {index} answered {status}")
        if time.perf_counter() - started > max_seconds:
            break
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
    }


def bench_update_checks(vehicles: int, requests: int, max_seconds: float) -> dict[str, dict]:
    """A campaign offers ECM and TCM releases to every vehicle; each check answers its plan."""
    from django.conf import settings
    from rest_framework.test import APIClient

    from core.auth import TLS_META_KEY
    from ecus.registry import load_registry_file
    from ecus.services import import_registry
    from ota.campaigns import create_campaign, start_campaign
    from ota.engine import run_tick
    from vehicles.services import register_vehicle

    import_registry(load_registry_file(settings.ECU_REGISTRY_FILE))
    for n in range(vehicles):
        register_vehicle(vin=_vin(n), model_name="Aurora", model_year=2026)
    releases = [_release("ECM", "2.0.0", ("2.0", "2.1")), _release("TCM", "3.0.0", ("2.0", "2.1"))]
    campaign = create_campaign(
        operator=None, name="bench", firmware_ids=[r.pk for r in releases], wave_percentages=[100]
    )
    start_campaign(campaign, operator=None)
    run_tick()

    clients = []
    for n in range(vehicles):
        client = APIClient(HTTP_HOST="localhost")
        client.defaults[TLS_META_KEY] = {
            "vin": _vin(n),
            "group": "MLKEM768",
            "cert_fingerprint": "",
        }
        clients.append(client)
    plain = APIClient(HTTP_HOST="localhost")

    def first_check(index: int) -> int:
        return clients[index].post("/api/v1/ota/check", {}, format="json").status_code

    def check(index: int) -> int:
        return clients[index % vehicles].post("/api/v1/ota/check", {}, format="json").status_code

    def healthz(index: int) -> int:
        return plain.get("/healthz").status_code

    def whoami(index: int) -> int:
        return clients[index % vehicles].get("/api/v1/tls/whoami/").status_code

    results = {
        # Plan computed from 100 ECUs and the zone packages looked up (built once, shared).
        "first check per vehicle (plans the update)": _timed_loop(
            first_check, vehicles, max_seconds
        ),
        "repeat update check (stored plan)": _timed_loop(check, requests, max_seconds),
        "trivial endpoint GET /healthz": _timed_loop(healthz, requests, max_seconds),
    }
    if whoami(0) == 200:
        # The same DRF stack and vehicle authentication, no OTA work: separates framework cost.
        results["trivial vehicle endpoint GET /api/v1/tls/whoami/"] = _timed_loop(
            whoami, requests, max_seconds
        )
    return results


def bench_fan_out(vehicles: int) -> dict[str, float]:
    """10,000 targeted vehicles: time the fan-out (targeting query + records) and the first offer."""
    from django.utils import timezone

    from ecus.models import Ecu, EcuType
    from ecus.versions import SemVer
    from ota.campaigns import create_campaign, start_campaign
    from ota.engine import TickSummary, _process_campaign, fan_out_campaign
    from ota.models import OtaUpdate
    from vehicles.models import Vehicle, ZonalGateway

    ecm = EcuType.objects.get(code="ECM")
    offset = 10_000_000
    now = timezone.now()
    # Each synthetic vehicle carries the one ECU the campaign targets (not all 100): the
    # fan-out cost depends on matching vehicles, and 1M ECU rows would dominate setup time.
    Vehicle.objects.bulk_create(
        [
            Vehicle(vin=_vin(offset + n), model_name="Fleetbench", model_year=2025)
            for n in range(vehicles)
        ],
        batch_size=2000,
    )
    ids = dict(Vehicle.objects.filter(model_name="Fleetbench").values_list("vin", "pk"))
    ZonalGateway.objects.bulk_create(
        [
            ZonalGateway(
                vehicle_id=pk,
                gateway_id="ZGW_FRONT",
                zone_number=1,
                name="Front",
                doip_logical_address=0x0100,
            )
            for pk in ids.values()
        ],
        batch_size=2000,
    )
    gateways = dict(
        ZonalGateway.objects.filter(vehicle__model_name="Fleetbench").values_list(
            "vehicle_id", "pk"
        )
    )
    key = SemVer.parse("1.1.1").sort_key
    Ecu.objects.bulk_create(
        [
            Ecu(
                vehicle_id=pk,
                ecu_id="ECU_001",
                ecu_type=ecm,
                zonal_gateway_id=gateways[pk],
                hardware_version="2.0",
                sw_version="1.1.1",
                sw_version_key=key,
                doip_logical_address=0x1001,
            )
            for pk in ids.values()
        ],
        batch_size=2000,
    )
    release = _release("ECM", "2.1.0", ("2.0",))
    campaign = create_campaign(
        operator=None,
        name="fan-out",
        firmware_ids=[release.pk],
        target_model_names=["Fleetbench"],
        wave_percentages=[1, 10, 50, 100],
    )
    start_campaign(campaign, operator=None, now=now)
    t0 = time.perf_counter()
    count = fan_out_campaign(campaign.pk, now=now)
    fan_out = time.perf_counter() - t0
    t0 = time.perf_counter()
    _process_campaign(campaign.pk, now, TickSummary())
    first_offer = time.perf_counter() - t0
    offered = OtaUpdate.objects.filter(campaign=campaign, state="offered").count()
    return {
        "vehicles": count,
        "fan_out_s": fan_out,
        "first_tick_s": first_offer,
        "offered": offered,
    }


def _write(args: argparse.Namespace, checks: dict[str, dict], fan: dict[str, float]) -> str:
    from django.db import connection

    repeat = checks["repeat update check (stored plan)"]["per_second"]
    trivial = checks["trivial endpoint GET /healthz"]["per_second"]
    lines = [
        "# API benchmarks",
        "",
        f"Command: `{shlex.join(['.venv/bin/python', 'bench/api.py', *sys.argv[1:]])}`",
        f"Database: {connection.vendor}; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs; {platform.machine()}.",
        "Requests run in-process through Django's full request path (middleware, DRF, the mutual-TLS",
        "identity as the TLS listener hands it over, the vehicle throttle, the database), one at a",
        "time; TLS handshakes are measured separately in tls.md.",
        "",
        f"## Update checks, {args.vehicles} vehicles with 100 ECUs each",
        "",
        "| request | requests | per second | p50 ms | p95 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in checks.items():
        lines.append(
            f"| {name} | {row['requests']} | {row['per_second']:.0f} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} |"
        )
    whoami = checks.get("trivial vehicle endpoint GET /api/v1/tls/whoami/")
    lines += [
        "",
        f"A repeat update check runs at {repeat / trivial:.0%} of the trivial endpoint's rate"
        + (
            f" and {repeat / whoami['per_second']:.0%} of a trivial endpoint with the same DRF "
            "stack and vehicle authentication."
            if whoami
            else "."
        ),
        "",
        f"## Campaign fan-out to {fan['vehicles']:,} vehicles",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| fan-out: targeting query + {fan['vehicles']:,} update records in 4 waves | {fan['fan_out_s']:.2f} |",
        f"| first worker tick: offer wave 1 ({fan['offered']} vehicles) and judge it | {fan['first_tick_s']:.2f} |",
        "",
        "Synthetic fan-out vehicles carry only the ECU the campaign targets; the update-check",
        "vehicles carry all 100 ECUs of the registry.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=50, help="100-ECU vehicles for the checks")
    parser.add_argument("--requests", type=int, default=2000, help="requests per measured loop")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="time bound per loop")
    parser.add_argument("--fan-out", type=int, default=10_000, help="vehicles in the fan-out")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ota-bench-api-") as tmp:
        _configure(Path(tmp))
        _fresh_database()
        checks = bench_update_checks(args.vehicles, args.requests, args.max_seconds)
        fan = bench_fan_out(args.fan_out)
        report = _write(args, checks, fan)
        print(report)
        if args.write:
            RESULTS.write_text(report)


if __name__ == "__main__":
    main()
