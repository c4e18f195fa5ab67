"""MQTT ingest benchmark: telemetry messages per second stored through bridge and worker, against
the rate at which a bare paho subscriber drains the same broker in the same run.

    .venv/bin/python bench/mqtt_ingest.py                 # SQLite in a temporary directory
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ota_bench .venv/bin/python bench/mqtt_ingest.py --append
    DATABASE_URL=... REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/mqtt_ingest.py \
        --worker-processes 1 --append             # workers in `manage.py runworker mqtt-inbound`

Both consumers drain the same kind of backlog: a persistent QoS 1 session is created, the
consumer goes away, N telemetry messages from V vehicles are published into its session, and
the clock runs from the consumer's reconnect until its last message is handled (received for
the bare subscriber; committed to the database for the bridge). The broker is a private
mosquitto on an ephemeral loopback port. Every phase is bounded by --messages and
--max-seconds. The CPU seconds of each thread of this process, of the broker and of the
database's backends (Linux /proc) show where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "mqtt.md"


def _configure(tmp: Path, *, redis: bool) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")
    os.environ["OTA_VAR_DIR"] = str(tmp)
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if not redis:
        # The bridge's in-process worker needs the in-memory layer.
        os.environ.pop("REDIS_URL", None)
    _ensure_postgres_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _ensure_postgres_database(url: str) -> None:
    if not url.startswith(("postgres://", "postgresql://")):
        return
    import psycopg
    from psycopg import sql

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _ticks(path: str) -> float:
    """CPU seconds (user + system) of one /proc stat file; 0 when it is gone or unreadable."""
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of every live thread of this process, by role (Linux /proc)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    totals: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        name = names.get(int(task.name), "other")
        if name.startswith("paho"):
            role = "paho network thread"
        elif name.startswith("mqtt-worker"):
            role = "worker database threads"
        elif name == "MainThread":
            role = "benchmark main thread"
        elif name.startswith("bridge-loop"):
            role = "bridge asyncio loop"
        else:
            role = "other"
        totals[role] = totals.get(role, 0.0) + _ticks(str(task / "stat"))
    return totals


def _server_cpu(broker_pid: int | None) -> dict[str, float]:
    """CPU seconds of the broker and of this database's PostgreSQL backends."""
    from django.db import connection

    totals = {"mosquitto": _ticks(f"/proc/{broker_pid}/stat") if broker_pid else 0.0}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            pids = [row[0] for row in cursor.fetchall()]
        totals["postgres backends"] = sum(_ticks(f"/proc/{pid}/stat") for pid in pids)
    return totals


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}


def _vehicles(count: int) -> list:
    from django.conf import settings

    from ecus.registry import load_registry_file
    from ecus.services import import_registry
    from vehicles.models import Vehicle
    from vehicles.services import register_vehicle

    import_registry(load_registry_file(settings.ECU_REGISTRY_FILE))
    vins = [f"BENCH{i:012d}" for i in range(count)]
    existing = set(Vehicle.objects.filter(vin__in=vins).values_list("vin", flat=True))
    for vin in vins:
        if vin not in existing:
            register_vehicle(vin=vin, model_name="Bench", model_year=2026)
    return vins


def _publish_backlog(port: int, root: str, vins: list[str], count: int, run: str) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{run}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    now = int(time.time())
    last = None
    for i in range(count):
        vin = vins[i % len(vins)]
        document = {
            "vin": vin,
            "seq": i,
            "timestamp": now,
            "values": {"speed_kph": i % 130, "battery_percent": 80, "gear": "D"},
        }
        last = client.publish(f"{root}/{vin}/telemetry", json.dumps(document), qos=1)
    if last is not None:
        last.wait_for_publish(120)
    client.loop_stop()
    client.disconnect()


def _bare_session(port: int, client_id: str, filters: list[str]):
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes

    received = {"count": 0, "last": 0.0}
    done = threading.Event()
    target = {"n": None}

    def on_message(client, userdata, message):
        received["count"] += 1
        if target["n"] is not None and received["count"] >= target["n"]:
            received["last"] = time.perf_counter()
            done.set()

    def connect() -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        client.on_message = on_message
        props = mqtt.Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        props.ReceiveMaximum = 4000
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
        return client

    return connect, received, done, target


def _end_session(port: int, client_id: str) -> None:
    """Discard a persistent session, so later rounds' messages are not queued (or shared) to it."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    props = mqtt.Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


def measure_bare(port: int, run: str, vins: list[str], count: int, max_seconds: float) -> dict:
    from core.mqtt import topics

    root = topics.topic_root()
    client_id = f"bench-bare-{run}"
    filters = [f"$share/ota-bridge-bare/{root}/+/telemetry"]
    connect, received, done, target = _bare_session(port, client_id, filters)
    client = connect()
    client.subscribe([(f, 1) for f in filters])
    client.loop_start()
    time.sleep(0.5)
    client.loop_stop()
    client.disconnect()
    _publish_backlog(port, root, vins, count, "bare")
    target["n"] = count
    received["count"] = 0
    threads_before = _thread_cpu()
    start = time.perf_counter()
    client = connect()
    client.loop_start()
    done.wait(max_seconds)
    elapsed = (received["last"] or time.perf_counter()) - start
    cpu = _delta(_thread_cpu(), threads_before)
    client.loop_stop()
    client.disconnect()
    _end_session(port, client_id)
    return {
        "received": received["count"],
        "seconds": elapsed,
        "rate": received["count"] / elapsed,
        "cpu": cpu,
    }


def _start_workers(count: int) -> list[subprocess.Popen[bytes]]:
    """`manage.py runworker mqtt-inbound` processes on the Redis channel layer."""
    if not count:
        return []
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runworker", "mqtt-inbound"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    # Django setup and the first Redis connection; the drain clock has not started yet.
    time.sleep(3.0)
    return workers


def _workers_cpu(workers: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    if not workers:
        return {}
    return {"runworker processes": sum(_ticks(f"/proc/{w.pid}/stat") for w in workers)}


def _stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def measure_bridge(
    broker: Any,
    run: str,
    vins: list[str],
    count: int,
    max_seconds: float,
    batch: int,
    threads: int | None,
    worker_processes: int,
) -> dict:
    from django.conf import settings
    from django.db import connection

    from core.mqtt import topics
    from diagnostics.models import TelemetrySample
    from telematics.bridge import BridgeOptions, MqttBridge

    settings.MQTT_URL = broker.url
    root = topics.topic_root()
    client_id = f"bench-bridge-{run}"
    options = BridgeOptions(
        client_id=client_id,
        batch_size=batch,
        worker_tasks=threads,
        run_worker=not worker_processes,
    )

    def run_bridge(until: threading.Event) -> MqttBridge:
        bridge = MqttBridge(options)
        threading.Thread(target=bridge.run, args=(until,), daemon=True, name="bridge-loop").start()
        return bridge

    # First visit: the broker learns the session and its subscriptions, then we leave.
    stop = threading.Event()
    bridge = run_bridge(stop)
    bridge.subscribed.wait(10)
    stop.set()
    time.sleep(1.0)
    TelemetrySample.objects.all().delete()
    _publish_backlog(broker.port, root, vins, count, "bridge")
    workers = _start_workers(worker_processes)
    threads_before = _thread_cpu()
    servers_before = {**_server_cpu(broker.process.pid), **_workers_cpu(workers)}
    stop = threading.Event()
    start = time.perf_counter()
    bridge = run_bridge(stop)
    stored = 0
    while time.perf_counter() - start < max_seconds:
        if workers:
            # Stored by other processes: only the database knows.
            stored = TelemetrySample.objects.count()
        else:
            # The worker counts a message once its transaction has committed; polling the
            # table instead would add its own load to the database being measured.
            stored = bridge.stats.outcomes["accepted"]
        if stored >= count:
            break
        time.sleep(0.1 if workers else 0.005)
    elapsed = time.perf_counter() - start
    servers = {**_server_cpu(broker.process.pid), **_workers_cpu(workers)}
    cpu = {**_delta(_thread_cpu(), threads_before), **_delta(servers, servers_before)}
    stop.set()
    time.sleep(0.5)
    _stop_workers(workers)
    _end_session(broker.port, client_id)
    distinct = TelemetrySample.objects.values("vehicle_id", "seq").distinct().count()
    connection.close()
    return {
        "stored": stored,
        "distinct": distinct,
        "seconds": elapsed,
        "rate": stored / elapsed,
        "outcomes": dict(bridge.stats.outcomes),
        "batches": bridge.stats.batches,
        "worker_seconds": bridge.stats.worker_seconds,
        "cpu": cpu,
    }


def _cpu_line(cpu: dict[str, float], seconds: float) -> str:
    parts = [f"{role} {value:.2f}" for role, value in sorted(cpu.items()) if value >= 0.01]
    return f"{', '.join(parts)} (CPU seconds over {seconds:.2f} s wall)"


def _write_results(args: argparse.Namespace, rounds: list[tuple[dict, dict]], env: dict) -> None:
    if args.worker_processes:
        workers = (
            f"{args.worker_processes} `manage.py runworker mqtt-inbound` process(es) "
            "(bridge started with no in-process worker)"
        )
    else:
        workers = f"in the bridge process, {env['worker_threads']} database thread(s)"
    lines = [
        f"## {env['database']}, channel layer {env['layer']}, worker {env['worker_mode']}",
        "",
        f"Command: `{env['command']}`",
        "",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- Broker: {env['broker']} (private instance, loopback, ephemeral port)",
        f"- Database: {env['database_detail']}; channel layer: {env['layer']}; "
        f"bridge batch size {args.batch}; worker: {workers}",
        f"- Each round: a backlog of {args.messages} QoS 1 telemetry messages from "
        f"{args.vehicles} vehicles, drained by a bare paho subscriber (receive only), then the "
        "same backlog drained by the bridge (bridge -> channel -> worker -> database, counted "
        "when its transaction has committed)",
        "",
        "| round | bare subscriber msg/s | bridge stored msg/s | ratio | lost at QoS 1 |",
        "|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for index, (bare, bridged) in enumerate(rounds, start=1):
        ratio = bridged["rate"] / bare["rate"]
        ratios.append(ratio)
        lost = args.messages - bridged["distinct"]
        lines.append(
            f"| {index} | {bare['rate']:,.0f} | {bridged['rate']:,.0f} | {ratio:.2f}x | {lost} |"
        )
    last_bare, last = rounds[-1]
    lost_total = sum(args.messages - b["distinct"] for _, b in rounds)
    lines += [
        "",
        f"Median ratio bridge/bare: **{statistics.median(ratios):.2f}x** (target >= 0.5x). "
        f"Messages lost at QoS 1 over all rounds: **{lost_total}**.",
        "",
        f"Last round, bare subscriber: {_cpu_line(last_bare['cpu'], last_bare['seconds'])}.",
        f"Last round, bridge: {_cpu_line(last['cpu'], last['seconds'])}; "
        f"outcomes `{last['outcomes'] or 'counted by the runworker processes'}`"
        + (f", {last['batches']} batches." if last["batches"] else "."),
        "",
    ]
    text = "\n".join(lines)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if args.append and output.exists():
        output.write_text(output.read_text().rstrip("\n") + "\n\n" + text)
    else:
        output.write_text("# MQTT ingest\n\n" + text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--vehicles", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--worker-threads", type=int, default=None, help="default: 1 on SQLite, 2 on PostgreSQL"
    )
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=0,
        help="run this many `manage.py runworker mqtt-inbound` processes on the Redis channel "
        "layer (REDIS_URL) instead of the bridge's in-process worker",
    )
    parser.add_argument(
        "--telemetry-async-commit",
        action="store_true",
        help="TELEMETRY_SYNCHRONOUS_COMMIT=False: telemetry transactions do not wait for "
        "their WAL flush (PostgreSQL; see docs/PROTOCOL.md)",
    )
    parser.add_argument(
        "--history",
        choices=["partitioned", "plain"],
        default="partitioned",
        help="PostgreSQL: telemetry history partitioned by day (the default) or one plain table",
    )
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--append", action="store_true", help="add a section to --output")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be in 1..10")
    if not 1 <= args.messages <= 100_000:
        parser.error("--messages must be in 1..100000 (the private broker queues at most 100000)")
    if not 0 <= args.worker_processes <= 4:
        parser.error("--worker-processes must be in 0..4")
    if not 1 <= args.max_seconds <= 600:
        parser.error("--max-seconds must be in 1..600")
    if args.worker_processes and not os.environ.get("REDIS_URL"):
        parser.error("--worker-processes needs REDIS_URL (a channel layer shared by processes)")
    if args.telemetry_async_commit and args.worker_processes:
        parser.error("--telemetry-async-commit applies to the in-process worker only")
    with tempfile.TemporaryDirectory(prefix="ota-bench-mqtt-") as tmp:
        _configure(Path(tmp), redis=bool(args.worker_processes))
        from django.conf import settings
        from django.db import connection

        from core.mqtt.testing_broker import PrivateMosquitto

        if args.telemetry_async_commit:
            settings.TELEMETRY_SYNCHRONOUS_COMMIT = False
        if connection.vendor == "postgresql" and args.history == "plain":
            from django.core.management import call_command

            # The migration before partitioning turns the history back into one table.
            call_command("migrate", "diagnostics", "0002", verbosity=0)
        vins = _vehicles(args.vehicles)
        broker = PrivateMosquitto()
        broker.start()
        rounds = []
        try:
            for index in range(args.rounds):
                run = uuid.uuid4().hex[:8]

                def bare(run: str = run) -> dict:
                    return measure_bare(broker.port, run, vins, args.messages, args.max_seconds)

                def bridged(run: str = run) -> dict:
                    return measure_bridge(
                        broker,
                        run,
                        vins,
                        args.messages,
                        args.max_seconds,
                        args.batch,
                        args.worker_threads,
                        args.worker_processes,
                    )

                # Alternate which consumer goes first, so a load that builds up or fades
                # during a round does not always favour the same one.
                if index % 2 == 0:
                    first = bare()
                    rounds.append((first, bridged()))
                else:
                    second = bridged()
                    rounds.append((bare(), second))
        finally:
            broker.cleanup()
            if connection.vendor == "postgresql" and args.history == "plain":
                from django.core.management import call_command

                call_command("migrate", "diagnostics", verbosity=0)
        version = subprocess.run(
            ["mosquitto", "-h"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0]
        url = os.environ["DATABASE_URL"]
        prefix = []
        if "postgres" in url:
            prefix.append(f"DATABASE_URL={url}")
        if args.worker_processes:
            prefix.append(f"REDIS_URL={os.environ['REDIS_URL']}")
        sync = getattr(settings, "TELEMETRY_SYNCHRONOUS_COMMIT", True)
        if connection.vendor == "postgresql":
            detail = (
                f"PostgreSQL {connection.pg_version // 10000}, telemetry synchronous_commit "
                f"{'on' if sync else 'off'}, history "
                f"{'partitioned by day' if args.history == 'partitioned' else 'one plain table'}"
            )
        else:
            detail = "SQLite (WAL) in a temporary directory"
        env = {
            "command": " ".join(
                [*prefix, ".venv/bin/python bench/mqtt_ingest.py", shlex.join(sys.argv[1:])]
            ).strip(),
            "broker": version,
            "database": connection.vendor,
            "database_detail": detail,
            "layer": "Redis" if args.worker_processes else "in-memory",
            "worker_mode": (
                f"{args.worker_processes} runworker process(es)"
                if args.worker_processes
                else "in the bridge process"
            ),
            "worker_threads": args.worker_threads or (1 if connection.vendor == "sqlite" else 2),
        }
        _write_results(args, rounds, env)


if __name__ == "__main__":
    main()
