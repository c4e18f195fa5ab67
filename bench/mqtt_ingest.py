"""MQTT ingest benchmark: telemetry messages per second stored through bridge and worker, against
the rate at which a bare paho subscriber drains the same broker in the same run.

    .venv/bin/python bench/mqtt_ingest.py                 # SQLite in a temporary directory
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ota_bench_mqtt .venv/bin/python bench/mqtt_ingest.py

Both consumers drain the same kind of backlog: a persistent QoS 1 session is created, the
consumer goes away, N telemetry messages from V vehicles are published into its session, and
the clock runs from the consumer's reconnect until its last message is handled (received for
the bare subscriber; stored in the database for the bridge). The broker is a private mosquitto
on an ephemeral loopback port. Every phase is bounded by --messages and --max-seconds.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "mqtt.md"


def _configure(tmp: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")
    os.environ["OTA_VAR_DIR"] = str(tmp)
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
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


def measure_bare(port: int, root: str, vins: list[str], count: int, max_seconds: float) -> dict:
    filters = [f"$share/ota-bridge-bare/{root}/+/telemetry"]
    connect, received, done, target = _bare_session(port, f"bench-bare-{root}", filters)
    client = connect()
    client.subscribe([(f, 1) for f in filters])
    client.loop_start()
    time.sleep(0.5)
    client.loop_stop()
    client.disconnect()
    _publish_backlog(port, root, vins, count, "bare")
    target["n"] = count
    received["count"] = 0
    start = time.perf_counter()
    client = connect()
    client.loop_start()
    done.wait(max_seconds)
    client.loop_stop()
    client.disconnect()
    elapsed = (received["last"] or time.perf_counter()) - start
    return {"received": received["count"], "seconds": elapsed, "rate": received["count"] / elapsed}


def measure_bridge(
    port: int,
    root: str,
    vins: list[str],
    count: int,
    max_seconds: float,
    batch: int,
    threads: int | None,
) -> dict:
    from django.conf import settings
    from django.db import connection

    from core.mqtt.bridge import BridgeOptions, MqttBridge
    from diagnostics.models import TelemetrySample

    settings.MQTT_URL = f"mqtt://127.0.0.1:{port}"
    settings.MQTT_TOPIC_ROOT = root
    options = BridgeOptions(
        client_id=f"bench-bridge-{root}", batch_size=batch, worker_tasks=threads
    )

    def run_bridge(until: threading.Event) -> MqttBridge:
        bridge = MqttBridge(options)
        threading.Thread(target=bridge.run, args=(until,), daemon=True).start()
        return bridge

    # First visit: the broker learns the session and its subscriptions, then we leave.
    stop = threading.Event()
    bridge = run_bridge(stop)
    bridge.subscribed.wait(10)
    stop.set()
    time.sleep(1.0)
    TelemetrySample.objects.all().delete()
    _publish_backlog(port, root, vins, count, "bridge")
    stop = threading.Event()
    start = time.perf_counter()
    bridge = run_bridge(stop)
    stored = 0
    while time.perf_counter() - start < max_seconds:
        stored = TelemetrySample.objects.count()
        if stored >= count:
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    stop.set()
    time.sleep(0.5)
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
    }


def _write_results(args: argparse.Namespace, rounds: list[tuple[dict, dict]], env: dict) -> None:
    lines = [
        "# MQTT ingest",
        "",
        f"Command: `{env['command']}`",
        "",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- Broker: {env['broker']} (private instance, loopback, ephemeral port)",
        f"- Database: {env['database']}; channel layer: in-memory; bridge batch size {args.batch}, "
        f"{env['worker_threads']} worker database thread(s)",
        f"- Each round: a backlog of {args.messages} QoS 1 telemetry messages from "
        f"{args.vehicles} vehicles, drained by a bare paho subscriber (receive only), then the "
        "same backlog drained by the bridge (bridge -> channel -> worker -> database, counted "
        "when stored)",
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
    lines += [
        "",
        f"Median ratio bridge/bare: **{statistics.median(ratios):.2f}x** (target >= 0.5x). "
        f"Messages lost at QoS 1 over all rounds: **{sum(args.messages - b['distinct'] for _, b in rounds)}**.",
        "",
        "Worker outcomes of the last round: "
        f"`{rounds[-1][1]['outcomes']}`; {rounds[-1][1]['batches']} batches, "
        f"{rounds[-1][1]['worker_seconds']:.2f} s inside the worker's database thread(s).",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--vehicles", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--worker-threads", type=int, default=None, help="default: 1 on SQLite, 2 on PostgreSQL"
    )
    args = parser.parse_args()
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be in 1..10")
    if not 1 <= args.messages <= 100_000:
        parser.error("--messages must be in 1..100000 (the private broker queues at most 100000)")
    with tempfile.TemporaryDirectory(prefix="ota-bench-mqtt-") as tmp:
        _configure(Path(tmp))
        from django.db import connection

        from core.mqtt.testing_broker import PrivateMosquitto

        vins = _vehicles(args.vehicles)
        broker = PrivateMosquitto()
        broker.start()
        rounds = []
        try:
            for _ in range(args.rounds):
                root = f"bench-{uuid.uuid4().hex[:8]}/vehicle"
                bare = measure_bare(
                    broker.port, root + "-bare", vins, args.messages, args.max_seconds
                )
                bridged = measure_bridge(
                    broker.port,
                    root,
                    vins,
                    args.messages,
                    args.max_seconds,
                    args.batch,
                    args.worker_threads,
                )
                rounds.append((bare, bridged))
        finally:
            broker.cleanup()
        version = subprocess.run(
            ["mosquitto", "-h"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0]
        env = {
            "command": " ".join(
                [f"DATABASE_URL={os.environ['DATABASE_URL']}"]
                if "postgres" in os.environ["DATABASE_URL"]
                else []
            )
            + (" " if "postgres" in os.environ["DATABASE_URL"] else "")
            + (".venv/bin/python bench/mqtt_ingest.py " + shlex.join(sys.argv[1:])).strip(),
            "broker": version,
            "database": connection.vendor,
            "worker_threads": args.worker_threads or (1 if connection.vendor == "sqlite" else 2),
        }
        _write_results(args, rounds, env)


if __name__ == "__main__":
    main()
