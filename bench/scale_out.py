"""Scale-out benchmark: the fleet on one vehicle-API server process, then on two sharing its ports.

One run: `manage.py runota` with every role (process A) alone. Two: A plus a second process B
with `--role vehicle-api,mqtt-front` on the same vehicle and MQTT TLS ports (`OTA_REUSE_PORT=1`,
the kernel spreads the fleet's connections), the same var/, database, Redis and broker. Both
runs set `OTA_REUSE_PORT=1` so the conditions are equal. For each: a fresh PostgreSQL database,
N vehicles connected, one campaign of a tiny image to all, until every vehicle's update ends.
Measured: server CPU seconds (summed over the server processes) per connected vehicle and per
completed update, the campaign's wall time, RSS per server process, and that every vehicle
succeeded exactly once. The ratio two/one of CPU per update is the cost of scaling out.

    python bench/scale_out.py --vehicles 300 --processes 1,2,1,2 --write

Writes bench/results/scale_out.md when `--write` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fleet import run_campaign  # noqa: E402
from simulator.fleet.drill import (  # noqa: E402
    FleetProcess,
    ServerProcess,
    stop_process,
    wait_until,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")
GOAL = 1.15
SECOND_ROLES = "vehicle-api,mqtt-front"


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def _rss_mib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def _vehicle_requests(log: Path) -> int:
    if not log.exists():
        return 0
    with log.open(errors="replace") as lines:
        return sum(
            "ota.access" in line and ("/api/v1/ota/" in line or "/api/v1/vehicles/" in line)
            for line in lines
        )


def measure(processes: int, args: argparse.Namespace, run: Path) -> dict[str, Any]:
    size = args.vehicles
    server = ServerProcess(
        var=run,
        database_url=args.database_url,
        mqtt_url=args.mqtt_url,
        redis_url=args.redis_url,
        extra_env={"OTA_VEHICLE_TIMEOUT_SECONDS": "900", "OTA_REUSE_PORT": "1"},
    )
    result: dict[str, Any] = {"processes": processes, "vehicles": size}
    server.prepare(fleet=size, families="ecdsa-p256:60,ml-dsa-65:40")
    server.start()
    second: subprocess.Popen | None = None
    fleet: FleetProcess | None = None
    summary: dict[str, Any] = {}
    try:
        pids = [server.process.pid]  # type: ignore[union-attr]
        if processes == 2:
            second = server.start_front("b", roles=SECOND_ROLES)
            pids.append(second.pid)
        time.sleep(3)
        cpu_before = _cpu_seconds(pids)
        options = ["--configs", args.configs, "--telemetry-interval", "60",
                   "--connect-rate", str(args.connect_rate), "--max-https", str(args.max_https)]  # fmt: skip
        fleet = FleetProcess(server, size, options, "fleet")
        started = time.monotonic()
        fleet.start()
        try:
            wait_until(lambda: fleet.progress().get("connected", 0) >= size,
                       timeout=args.timeout, what=f"{size} vehicles connected", every=1)  # fmt: skip
        except TimeoutError:
            result["broke"] = f"only {fleet.progress().get('connected', 0)} of {size} connected"
            return result
        result["connect_s"] = time.monotonic() - started
        result["connect_cpu_s_per_vehicle"] = (_cpu_seconds(pids) - cpu_before) / size

        console = server.console()
        firmware = console.upload("ECM", "2.0.0", random.randbytes(1024), "2.0,2.1")
        cpu_before, started = _cpu_seconds(pids), time.monotonic()
        detail = run_campaign(
            console, f"scale-out {processes}", firmware, size, args.campaign_timeout, 2, result
        )
        result["campaign_s"] = time.monotonic() - started
        result["campaign_status"] = detail["status"]
        result["campaign_counts"] = {k: v for k, v in detail["counts"].items() if v}
        finished = sum(detail["counts"].get(k, 0) for k in ("succeeded", "failed", "rolled_back"))
        if finished:
            result["update_cpu_s"] = (_cpu_seconds(pids) - cpu_before) / finished
        result["rss_mib"] = [_rss_mib(pid) for pid in pids]
        if second is not None and second.poll() is not None:
            result["broke"] = f"second runota exited with {second.returncode}"
    finally:
        if fleet is not None:
            try:
                summary = fleet.stop()
            except (OSError, ValueError) as exc:
                result.setdefault("broke", f"fleet summary: {exc}")
        if second is not None:
            stop_process(second)
        server.stop()
    # Where the kernel put the work: vehicle-API requests each process logged.
    logs = [server.var / "runota.log", server.var / "runota-b.log"][:processes]
    result["vehicle_requests"] = [_vehicle_requests(log) for log in logs]
    mismatched, outcomes = 0, {}
    for vehicle in summary.get("vehicles", []):
        names = [o["result"] for o in vehicle["outcomes"]]
        for name in names:
            outcomes[name] = outcomes.get(name, 0) + 1
        mismatched += names != ["succeeded"]
    result["vehicle_outcomes"] = outcomes
    result["vehicles_not_exactly_one_success"] = mismatched if summary else None
    return result


def _table(results: list[dict[str, Any]], command: str) -> str:
    def cell(r: dict, key: str, fmt: str) -> str:
        return format(r[key], fmt) if key in r else "—"

    lines = [
        "# Scale-out: one vs two vehicle-API server processes",
        "",
        f"`{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; PostgreSQL, Redis db 12 and the machine's Mosquitto "
        "(a private topic root per run); the fleet is one `python -m simulator fleet` process "
        "on the same machine. One process: `manage.py runota` with every role. Two: that plus "
        f"`runota --role {SECOND_ROLES}` on the same ports (`OTA_REUSE_PORT=1` in both runs), "
        "var/, database, Redis and broker. CPU is the sum over the server processes.",
        "",
        "| processes | vehicles | connect CPU-s/vehicle | CPU-s per update | campaign s | "
        "RSS per process MiB | vehicle-API requests per process | outcomes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rss = " / ".join(f"{m:.0f}" for m in r.get("rss_mib", [])) or "—"
        outcome = (
            f"{r['campaign_counts']}; {r['vehicles_not_exactly_one_success']} vehicles without "
            "exactly one success"
            if "campaign_counts" in r
            else "campaign not run"
        )
        lines.append(
            f"| {r['processes']} | {r['vehicles']:,} | "
            f"{cell(r, 'connect_cpu_s_per_vehicle', '.3f')} | {cell(r, 'update_cpu_s', '.3f')} | "
            f"{cell(r, 'campaign_s', '.0f')} | {rss} | "
            f"{' / '.join(f'{n:,}' for n in r.get('vehicle_requests', [])) or '—'} | {outcome} |"
        )
    # Runs alternate (`--processes 1,2,1,2`): the median of each layout damps the machine's noise.
    one, two = (
        [r["update_cpu_s"] for r in results if r["processes"] == n and "update_cpu_s" in r]
        for n in (1, 2)
    )
    if one and two:
        ratio = statistics.median(two) / statistics.median(one)
        verdict = "met" if ratio <= GOAL else "missed"
        each = ", ".join(f"{b / a:.2f}x" for a, b in zip(one, two, strict=False))
        lines += [
            "",
            f"CPU per update, two/one (medians of {len(one)} and {len(two)} runs): "
            f"**{ratio:.2f}x** (goal within {GOAL}x: {verdict}); pair by pair: {each}.",
        ]
    broke = [f"- {r['processes']} process(es): {r['broke']}" for r in results if "broke" in r]
    if broke:
        lines += ["", "What broke:", "", *broke]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=300)
    parser.add_argument("--processes", default="1,2", help="runs, in order")
    parser.add_argument("--configs", default="1:60,13:30,4:10")
    parser.add_argument("--connect-rate", type=float, default=100.0)
    parser.add_argument("--max-https", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=300.0, help="to connect, seconds")
    parser.add_argument("--campaign-timeout", type=float, default=400.0)
    parser.add_argument("--database-url", default=os.environ.get(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ota_scale_bench"))  # fmt: skip
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    command = "python bench/scale_out.py " + " ".join(sys.argv[1:] if argv is None else argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    base = Path(tempfile.mkdtemp(prefix="scale-out-bench-"))
    results = []
    for number, processes in enumerate(int(p) for p in args.processes.split(",")):
        # A var/ of its own per run: a repeat must not read the last run's fleet progress.
        result = measure(processes, args, base / f"run{number}-{processes}")
        print(json.dumps(result), flush=True)
        results.append(result)
    print(_table(results, command.strip()))
    if args.write:
        (REPO / "bench" / "results" / "scale_out.md").write_text(_table(results, command.strip()))


if __name__ == "__main__":
    main()
