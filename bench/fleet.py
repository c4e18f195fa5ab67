"""Fleet benchmark: how many vehicles one `runota` carries on this machine, and what each costs.

For each fleet size: a fresh server (`manage.py runota` on PostgreSQL, Redis and Mosquitto, as
its own process) and `python -m simulator fleet` in `--shards` processes. Measured:

* vehicles held connected over MQTT through the PQC-TLS front, server CPU per vehicle to
  connect (registration, first VCI, MQTT session) and server memory per connected vehicle;
* telemetry messages stored per second while the fleet idles (one message a minute each);
* a campaign of a tiny ECM image to every vehicle: time to finish, update checks per second,
  server CPU per update, and that every vehicle's own account matches the campaign's counts;
* a reconnect storm (SIGUSR1: every vehicle loses MQTT at once): handshakes per second, as a
  ratio of the MQTT front's own sequential rate measured in the same run with
  `bench/tls_handshake.py`'s client loop.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ota_fleet_bench \\
        python bench/fleet.py --sizes 1000,5000,10000 --write

Writes bench/results/fleet.json, the table bench/results/fleet-runs.md and the plot
docs/img/fleet-cost.png when `--write` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from simulator.fleet.drill import (  # noqa: E402
    FleetProcess,
    ServerProcess,
    stop_process,
    wait_until,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def _rss(pids: list[int]) -> int:
    import psutil

    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


def _sequential_handshakes(server: ServerProcess, seconds: float) -> float:
    """The MQTT front's single-connection rate: one client, one handshake after another."""
    from bench.tls_handshake import _measure
    from pqc.catalogue import get_configuration
    from pqc.client import ClientCredentials

    manifest = json.loads((server.fleet_dir / "fleet.json").read_text())["vehicles"]
    first = next(v for v in manifest if v["family"] == "ecdsa-p256")["vin"]
    credentials = ClientCredentials(
        ca=server.fleet_dir / "ca-bundle.pem",
        cert=server.fleet_dir / first / "vehicle.crt",
        key=server.fleet_dir / first / "vehicle.key",
    )
    times, _, _ = _measure(
        "127.0.0.1", server.mqtt_port, get_configuration(1), credentials, 100_000, seconds
    )
    return len(times) / sum(times)


def _telemetry_rows(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM diagnostics_telemetrysample").fetchone()[0]


def _server_states(database_url: str, campaign_name: str) -> dict[str, str]:
    """VIN -> the state the server holds for that vehicle's update in the campaign."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT v.vin, u.state FROM ota_otaupdate u"
            " JOIN vehicles_vehicle v ON v.id = u.vehicle_id"
            " JOIN ota_campaign c ON c.id = u.campaign_id WHERE c.name = %s",
            (campaign_name,),
        ).fetchall()
    return dict(rows)


def _quiet(fleets: list[FleetProcess], samples: int = 5) -> Any:
    """A check that holds once no vehicle has been updating for `samples` checks in a row."""
    seen: list[int] = []

    def check() -> bool:
        seen.append(sum(f.progress().get("updating", 0) for f in fleets))
        return len(seen) >= samples and not any(seen[-samples:])

    return check


def _connected(fleets: list[FleetProcess]) -> int:
    return sum(f.progress().get("connected", 0) for f in fleets)


def run_campaign(
    console: Any,
    name: str,
    firmware: dict[str, Any],
    size: int,
    timeout: float,
    every: float,
    result: dict[str, Any],
) -> dict[str, Any]:
    """Start one campaign of `firmware` to the fleet's first `size` vehicles and wait for its end.

    What breaks is recorded in `result["broke"]` and the campaign's last state returned.
    """
    from pqc.pki import fleet_vin

    campaign = console.start_campaign(
        name=name, firmware_ids=[firmware["id"]],
        target_vins=[fleet_vin(i) for i in range(size)], wave_percentages=[100],
        failure_threshold=0.5, success_threshold=0.5, max_attempts=1,
    )  # fmt: skip
    try:
        return console.wait_campaign(
            campaign, lambda c: c["status"] in ("completed", "paused", "cancelled"),
            timeout=timeout, every=every,
        )  # fmt: skip
    except Exception as exc:  # the bench records what broke and goes on
        result["broke"] = f"campaign: {exc}"[:300]
        return console.campaign(campaign)


def measure(size: int, args: argparse.Namespace, base: Path) -> dict[str, Any]:
    server = ServerProcess(
        var=base / f"fleet-{size}",
        database_url=args.database_url,
        mqtt_url=args.mqtt_url,
        redis_url=args.redis_url,
        extra_env={
            "OTA_VEHICLE_TIMEOUT_SECONDS": "900",
            **({"OTA_REUSE_PORT": "1"} if args.fronts else {}),
            **({"PYTHONTRACEMALLOC": "1"} if args.trace_memory else {}),
        },
        wrapper=(
            ["bench/profile_server.py", "--out", str(args.profile / f"fleet-{size}")]
            if args.profile
            else []
        ),
    )
    started = time.monotonic()
    server.prepare(fleet=size, families="ecdsa-p256:60,ml-dsa-65:40")
    result: dict[str, Any] = {"size": size, "prepare_s": time.monotonic() - started}
    server.start()
    fleets: list[FleetProcess] = []
    fronts: list[subprocess.Popen] = []
    server_states: dict[str, str] = {}
    try:
        pid = server.process.pid  # type: ignore[union-attr]
        # More vehicle-facing processes on the same ports: one process holds two descriptors
        # per vehicle (its TLS connection and its broker connection), so the open-files limit
        # (20,000 here) caps one process below 10,000 vehicles.
        fronts = [server.start_front(f"front{i}") for i in range(args.fronts)]
        pids = [pid, *(front.pid for front in fronts)]
        result["server_processes"] = len(pids)
        time.sleep(3)
        result["reference_handshakes_per_s"] = _sequential_handshakes(server, 5.0)
        rss_idle, cpu_before = _rss(pids), _cpu_seconds(pids)
        if args.profile:
            os.kill(pid, signal.SIGUSR2)  # profile-1.txt: memory before any vehicle
            time.sleep(2)
            cpu_before = _cpu_seconds(pids)
        options = ["--configs", args.configs, "--telemetry-interval", "60",
                   "--connect-rate", str(args.connect_rate / args.shards),
                   "--max-https", str(args.max_https)]  # fmt: skip
        fleets = [
            FleetProcess(server, size, [*options, "--shard", f"{i}/{args.shards}"], f"shard{i}")
            for i in range(args.shards)
        ]
        started = time.monotonic()
        for fleet in fleets:
            fleet.start()
        # The first vehicles also pay for what the server sets up once (modules imported on
        # first use, pooled database connections, caches): the memory per vehicle is measured
        # from the point a tenth of the fleet is connected as well.
        warm: dict[str, float] = {}

        def all_connected() -> bool:
            connected = _connected(fleets)
            if not warm and connected >= size // 10:
                warm.update(connected=connected, rss=_rss(pids))
            return connected >= size

        try:
            wait_until(all_connected, timeout=args.timeout, what=f"{size} vehicles connected",
                       every=2)  # fmt: skip
        except TimeoutError:
            result["connected"] = _connected(fleets)
            result["broke"] = f"only {result['connected']} of {size} connected in {args.timeout} s"
            return result
        result["connected"] = _connected(fleets)
        result["connect_s"] = time.monotonic() - started
        result["connect_cpu_s_per_vehicle"] = (_cpu_seconds(pids) - cpu_before) / size
        time.sleep(5)  # the connection burst's buffers settle
        result["rss_per_vehicle_kib"] = (_rss(pids) - rss_idle) / size / 1024
        if warm and warm["connected"] < size:
            result["rss_marginal_per_vehicle_kib"] = (
                (_rss(pids) - warm["rss"]) / (size - warm["connected"]) / 1024
            )
        result["rss_mib"] = _rss(pids) / 2**20
        if args.profile:
            os.kill(pid, signal.SIGUSR2)  # profile-2.txt: the connect phase, memory connected

        rows, moment = _telemetry_rows(args.database_url), time.monotonic()
        time.sleep(args.telemetry_window)
        result["telemetry_stored_per_s"] = (_telemetry_rows(args.database_url) - rows) / (
            time.monotonic() - moment
        )
        result["telemetry_offered_per_s"] = size / 60
        # What is measured so far, in case the campaign does not finish in the time there is.
        print(json.dumps({"before_campaign": result}), file=sys.stderr, flush=True)
        if args.connect_only:
            return result

        console = server.console()
        firmware = console.upload("ECM", "2.0.0", random.randbytes(1024), "2.0,2.1")
        cpu_before, started = _cpu_seconds(pids), time.monotonic()
        detail = run_campaign(
            console, f"fleet {size}", firmware, size, args.campaign_timeout, 5, result
        )
        result["campaign_s"] = time.monotonic() - started
        result["campaign_status"] = detail["status"]
        result["campaign_counts"] = {k: v for k, v in detail["counts"].items() if v}
        finished = sum(detail["counts"].get(k, 0) for k in ("succeeded", "failed", "rolled_back"))
        result["update_checks_per_s"] = finished / result["campaign_s"]
        result["update_cpu_s_per_vehicle"] = (_cpu_seconds(pids) - cpu_before) / size
        if args.profile:
            os.kill(pid, signal.SIGUSR2)  # profile-3.txt: telemetry window and campaign
        # The server counts an update succeeded at the vehicle's final report; the vehicle
        # still sends its proof VCI after it. The storm waits for that tail.
        try:
            wait_until(_quiet(fleets), timeout=120, what="the fleet to finish updating", every=1)
        except TimeoutError:
            result.setdefault("broke", "vehicles still updating 120 s after the campaign ended")
        server_states = _server_states(args.database_url, f"fleet {size}")

        started = time.monotonic()
        for fleet in fleets:
            os.killpg(fleet.process.pid, signal.SIGUSR1)  # type: ignore[union-attr]
        try:
            # The progress lines must first show the cut, or a stale line reads as "all back".
            wait_until(lambda: _connected(fleets) < size // 2, timeout=30,
                       what="connections cut", every=0.2)  # fmt: skip
            wait_until(lambda: _connected(fleets) >= size, timeout=args.timeout,
                       what="reconnected", every=0.5)  # fmt: skip
            result["storm_s"] = time.monotonic() - started
            result["storm_handshakes_per_s"] = size / result["storm_s"]
            result["storm_ratio"] = (
                result["storm_handshakes_per_s"] / result["reference_handshakes_per_s"]
            )
        except TimeoutError:
            result["broke"] = f"reconnect storm: {_connected(fleets)} of {size} back"
    finally:
        summaries = []
        for fleet in fleets:
            try:
                summaries.append(fleet.stop())
            except (OSError, ValueError) as exc:
                result.setdefault("broke", f"fleet summary: {exc}")
        for front in fronts:
            stop_process(front)
        server.stop()
    outcomes: dict[str, int] = {}
    mismatched = disagreeing = 0
    for summary in summaries:
        for vehicle in summary["vehicles"]:
            results = [o["result"] for o in vehicle["outcomes"]]
            for name in results:
                outcomes[name] = outcomes.get(name, 0) + 1
            mismatched += results != ["succeeded"]
            # The vehicle's own final state against the server's record of it.
            runs_new = "2.0.0" in vehicle["installed"].values()
            disagreeing += runs_new != (server_states.get(vehicle["vin"]) == "succeeded")
    result["vehicle_outcomes"] = outcomes
    result["vehicles_not_exactly_one_success"] = mismatched
    if server_states:
        result["vehicles_whose_software_disagrees_with_the_server"] = disagreeing
    return result


def _table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    def cell(r: dict, key: str, fmt: str) -> str:
        return format(r[key], fmt) if key in r else "—"

    lines = [
        "# Fleet benchmark runs",
        "",
        f"`python bench/fleet.py --sizes {args.sizes} --shards {args.shards} --write` with "
        "`DATABASE_URL` (PostgreSQL), Redis and Mosquitto; the server is `manage.py runota` "
        "with every role, plus `--fronts` more `runota --role vehicle-api,mqtt-front` processes "
        "on the same ports where the table says so (server figures are summed over them); the "
        f"fleet is `python -m simulator fleet` in {args.shards} processes, all on this 2-CPU "
        f"machine, configurations {args.configs}.",
        "",
        "| vehicles | server processes | connected | connect s | server CPU s / vehicle to connect | server KiB / "
        "connected vehicle | KiB / vehicle after the first tenth | "
        "telemetry stored/s (offered) | campaign s | update checks/s | "
        "server CPU s / update | reconnect storm handshakes/s | vs sequential | outcomes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['size']:,} | {r.get('server_processes', 1)} | {r.get('connected', 0):,} | "
            f"{cell(r, 'connect_s', '.0f')} | "
            f"{cell(r, 'connect_cpu_s_per_vehicle', '.3f')} | "
            f"{cell(r, 'rss_per_vehicle_kib', '.0f')} | "
            f"{cell(r, 'rss_marginal_per_vehicle_kib', '.0f')} | "
            f"{cell(r, 'telemetry_stored_per_s', '.0f')} ({cell(r, 'telemetry_offered_per_s', '.0f')}) | "
            f"{cell(r, 'campaign_s', '.0f')} | {cell(r, 'update_checks_per_s', '.1f')} | "
            f"{cell(r, 'update_cpu_s_per_vehicle', '.3f')} | "
            f"{cell(r, 'storm_handshakes_per_s', '.0f')} | "
            + (
                f"{r['storm_ratio']:.2f}x of {r['reference_handshakes_per_s']:.0f}/s | "
                if "storm_ratio" in r
                else "— | "
            )
            + (
                f"{r['campaign_counts']}; {r['vehicles_not_exactly_one_success']} vehicles "
                "without exactly one success"
                + (
                    f", {r['vehicles_whose_software_disagrees_with_the_server']} whose software "
                    "disagrees with the server's record"
                    if "vehicles_whose_software_disagrees_with_the_server" in r
                    else ""
                )
                + " |"
                if r.get("campaign_status") == "completed"
                else f"campaign {r.get('campaign_status', 'not run')} |"
            )
        )
    broke = [f"- {r['size']:,} vehicles: {r['broke']}" for r in results if "broke" in r]
    if broke:
        lines += ["", "What broke:", "", *broke]
    return "\n".join(lines) + "\n"


def _plots(results: list[dict[str, Any]], directory: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in results if "connect_cpu_s_per_vehicle" in r]
    if not done:
        return
    sizes = [r["size"] for r in done]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(sizes, [r["connect_cpu_s_per_vehicle"] for r in done], "o-", label="connect")
    axes[0].plot(sizes, [r.get("update_cpu_s_per_vehicle", float("nan")) for r in done], "s-",
                 label="update")  # fmt: skip
    axes[0].set_title("server CPU-s per vehicle")
    axes[0].legend()
    axes[1].plot(sizes, [r["rss_per_vehicle_kib"] for r in done], "o-")
    axes[1].axhline(50, color="grey", linestyle="--", label="goal 50 KiB")
    axes[1].set_title("server KiB per connected vehicle")
    axes[1].legend()
    axes[2].plot(sizes, [r.get("update_checks_per_s", float("nan")) for r in done], "o-",
                 label="update checks/s")  # fmt: skip
    axes[2].plot(sizes, [r.get("storm_handshakes_per_s", float("nan")) for r in done], "s-",
                 label="storm handshakes/s")  # fmt: skip
    axes[2].set_title("rates")
    axes[2].legend()
    for axis in axes:
        axis.set_xlabel("vehicles")
        axis.set_xscale("log")
    figure.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    figure.savefig(directory / "fleet-cost.png", dpi=90)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--configs", default="1:60,13:30,4:10")
    parser.add_argument("--connect-rate", type=float, default=200.0)
    parser.add_argument("--max-https", type=int, default=50, help="per fleet process")
    parser.add_argument("--timeout", type=float, default=900.0, help="per phase, seconds")
    parser.add_argument("--campaign-timeout", type=float, default=1800.0)
    parser.add_argument("--telemetry-window", type=float, default=30.0)
    parser.add_argument("--database-url", default=os.environ.get(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ota_fleet_bench"))  # fmt: skip
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--fronts", type=int, default=0,
                        help="more `runota --role vehicle-api,mqtt-front` processes on the ports")  # fmt: skip
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run the server under bench/profile_server.py, reports here")  # fmt: skip
    parser.add_argument("--trace-memory", action="store_true",
                        help="with --profile: tracemalloc in the server (slower, more memory)")  # fmt: skip
    parser.add_argument("--connect-only", action="store_true",
                        help="stop before the campaign (memory and telemetry only)")  # fmt: skip
    args = parser.parse_args(argv)
    # Started in the background, a shell makes SIGINT ignored: Ctrl-C or `kill -INT` must still
    # stop the run through its cleanup (fleets, then servers).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Children inherit the raised limit: the server holds one descriptor per vehicle and more.
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    base = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        result = measure(size, args, base)
        print(json.dumps(result), flush=True)
        results.append(result)
        if args.write:
            (REPO / "bench" / "results" / "fleet.json").write_text(json.dumps(results, indent=1))
            # The runs' table; bench/results/fleet.md, the section in docs/BENCHMARKS.md, quotes
            # it with what the runs found.
            (REPO / "bench" / "results" / "fleet-runs.md").write_text(_table(results, args))
            _plots(results, REPO / "docs" / "img")


if __name__ == "__main__":
    main()
