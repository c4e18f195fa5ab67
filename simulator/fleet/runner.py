"""`python -m simulator fleet`: many complete vehicles in one process, on one event loop.

Credentials come from `manage.py pqc_pki issue-fleet --out DIR` (DIR/fleet.json lists each
VIN and its key family)::

    python manage.py pqc_pki issue-fleet --count 1000 --out var/fleet \\
        --families ecdsa-p256:60,ml-dsa-65:40
    python -m simulator fleet --count 1000 --credentials var/fleet --configs 1:60,13:30,4:10 \\
        --fail boot:2% --silent 1% --cut-downloads 5% --summary var/fleet/summary.json

Vehicle `i` of the run takes PQC configuration `i` of the interleaved `--configs` mix and the
next certificate of that configuration's key family. `--shard i/n` runs only the vehicles
whose number is `i` modulo `n`, so several processes (one per core) share one fleet. A line of
progress goes to stderr every few seconds; at the end (SIGINT, SIGTERM or `--duration`) a
JSON summary goes to `--summary`, with what every vehicle's handshakes negotiated. SIGUSR1
cuts every vehicle's MQTT connection at once (a reconnect storm). With
`--state FILE` the vehicles remember what they run across runs (shards may share the file only
when they stop one after another).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import resource
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from firmware.signing import load_trust_set
from pqc.catalogue import get_configuration, load_catalogue
from pqc.pki import PkiError, parse_shares, spread_shares
from simulator.ecus import read_build_sheet
from simulator.fleet.tls import ClientContexts, VehicleIdentity
from simulator.fleet.vehicle import Faults, FleetServer, FleetShared, FleetVehicle

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "config" / "pqc_configs.yaml"
REGISTRY = ROOT / "config" / "ecu_registry.yaml"
TRUST = Path("var") / "signing" / "trust.pem"
FAULTS = ("boot",)


def rate(text: str) -> float:
    """ "2%" or "0.02" -> 0.02."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: a rate between 0 and 100 %")
    return value


def failure(text: str) -> tuple[str, float]:
    mode, _, share = text.partition(":")
    if mode not in FAULTS or not share:
        raise argparse.ArgumentTypeError(f"{text}: MODE:RATE with MODE one of {FAULTS}")
    return mode, rate(share)


def shard(text: str) -> tuple[int, int]:
    index, _, total = text.partition("/")
    if not (index.isdigit() and total.isdigit() and 0 <= int(index) < int(total)):
        raise argparse.ArgumentTypeError(f"{text}: I/N with 0 <= I < N")
    return int(index), int(total)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulator fleet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--count", type=int, required=True, help="vehicles in the whole fleet")
    p.add_argument("--credentials", type=Path, required=True, help="the issue-fleet directory")
    p.add_argument("--configs", default="1", help='PQC configuration mix, e.g. "1:60,13:30,4:10"')
    p.add_argument("--shard", type=shard, default=(0, 1), help="I/N: this process's share")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--server-name", default="localhost")
    p.add_argument("--api-port", type=int, default=8443)
    p.add_argument("--mqtt-port", type=int, default=8883)
    p.add_argument("--topic-root", default="vehicle")
    p.add_argument("--trust", type=Path, default=TRUST, help="package signing keys (trust.pem)")
    p.add_argument("--build-sheet", type=Path, default=REGISTRY)
    p.add_argument("--telemetry-interval", type=float, default=30.0)
    p.add_argument("--keepalive", type=int, default=60)
    p.add_argument("--answer-ecus", default="all")
    p.add_argument("--fail", type=failure, action="append", default=[], help="e.g. boot:2%%")
    p.add_argument("--silent", type=rate, default=0.0, help="share that answers nothing")
    p.add_argument("--cut-downloads", type=rate, default=0.0, help="share cut mid-download")
    p.add_argument("--seed", default="fleet", help="faults are drawn from this seed and the VIN")
    p.add_argument("--connect-rate", type=float, default=100.0, help="vehicles started per second")
    p.add_argument("--max-https", type=int, default=100, help="vehicles in HTTPS work at once")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--progress-interval", type=float, default=5.0)
    p.add_argument("--summary", type=Path, help="write the JSON summary here")
    p.add_argument("--state", type=Path,
                   help="what each vehicle runs, read at start and written at the end")  # fmt: skip
    return p


def assign(
    count: int, configs: str, manifest: list[dict[str, str]], catalogue: Any
) -> list[tuple[str, Any]]:
    """(VIN, configuration) of every vehicle of the fleet, the same in every shard."""
    ids = spread_shares(parse_shares(configs, name="configs"), count)
    by_family: dict[str, list[str]] = {}
    for vehicle in manifest:
        by_family.setdefault(vehicle["family"], []).append(vehicle["vin"])
    queues = {family: iter(vins) for family, vins in by_family.items()}
    out = []
    for config_id in ids:
        config = get_configuration(int(config_id), catalogue)
        vin = next(queues.get(config.signature, iter(())), None)
        if vin is None:
            need = ids.count(config_id)
            raise PkiError(
                f"credentials: not enough {config.signature} certificates for configuration "
                f"{config.id} ({need} wanted, {len(by_family.get(config.signature, []))} issued "
                "in all); issue more with --families"
            )
        out.append((vin, config))
    return out


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Fleet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        manifest = json.loads((args.credentials / "fleet.json").read_text())["vehicles"]
        catalogue = load_catalogue(CATALOGUE)
        everyone = assign(args.count, args.configs, manifest, catalogue)
        index, total = args.shard
        self.server = FleetServer(
            host=args.host,
            api_port=args.api_port,
            mqtt_port=args.mqtt_port,
            server_name=args.server_name,
            topic_root=args.topic_root,
        )
        self.shared = FleetShared(
            server=self.server,
            contexts=ClientContexts(args.credentials / "ca-bundle.pem"),
            trust=load_trust_set(args.trust),
            build_sheet=read_build_sheet(args.build_sheet),
            telemetry_interval=args.telemetry_interval,
            keepalive=args.keepalive,
            answer_rule=args.answer_ecus,
            https_slots=asyncio.Semaphore(args.max_https),
        )
        boot_rate = dict(args.fail).get("boot", 0.0)
        self.vehicles = []
        for number, (vin, config) in enumerate(everyone):
            if number % total != index:
                continue
            draw = random.Random(f"{args.seed}:{vin}")
            faults = Faults(
                fail_boot=draw.random() < boot_rate,
                silent=draw.random() < args.silent,
                cut_download=draw.random() < args.cut_downloads,
            )
            identity = VehicleIdentity.load(vin, args.credentials / vin)
            self.vehicles.append(FleetVehicle(identity, config, self.shared, faults))
        if args.state is not None and args.state.exists():
            saved = json.loads(args.state.read_text())
            for vehicle in self.vehicles:
                vehicle.restore(saved.get(vehicle.vin, {}))
        self.started = time.monotonic()

    def drop_connections(self) -> None:
        """Cut every MQTT connection without a goodbye; the vehicles reconnect with backoff."""
        for vehicle in self.vehicles:
            if vehicle.mqtt is not None:
                vehicle.mqtt.stream.abort()

    def save_state(self, path: Path) -> None:
        saved = json.loads(path.read_text()) if path.exists() else {}
        saved.update({vehicle.vin: vehicle.saved_state() for vehicle in self.vehicles})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved))
        tmp.replace(path)

    def counts(self) -> dict[str, int]:
        done = failed = 0
        for vehicle in self.vehicles:
            last = vehicle.outcomes[-1]["result"] if vehicle.outcomes else ""
            if vehicle.state == "failed" or last in ("failed", "rolled_back", "error"):
                failed += 1
            elif last == "succeeded":
                done += 1
        states = Counter(v.state for v in self.vehicles)
        return {
            "vehicles": len(self.vehicles),
            "connected": sum(1 for v in self.vehicles if v.mqtt is not None),
            "updating": states["updating"],
            "done": done,
            "failed": failed,
        }

    async def _progress(self) -> None:
        last_handshakes, last_time = 0, time.monotonic()
        while True:
            await asyncio.sleep(self.args.progress_interval)
            now = time.monotonic()
            handshakes = self.shared.handshakes.completed
            per_second = (handshakes - last_handshakes) / max(now - last_time, 1e-9)
            last_handshakes, last_time = handshakes, now
            c = self.counts()
            print(
                f"[fleet {self.args.shard[0]}/{self.args.shard[1]}] {now - self.started:6.0f} s  "
                f"connected {c['connected']}/{c['vehicles']}  updating {c['updating']}  "
                f"done {c['done']}  failed {c['failed']}  handshakes/s {per_second:.0f}  "
                f"telemetry {self.shared.telemetry_sent}",
                file=sys.stderr,
                flush=True,
            )

    async def run(self, stop: asyncio.Event) -> None:
        async def start(vehicle: FleetVehicle, delay: float) -> None:
            await asyncio.sleep(delay)
            if not stop.is_set():
                await vehicle.run(stop)

        progress = asyncio.create_task(self._progress())
        tasks = [
            asyncio.create_task(start(v, n / self.args.connect_rate))
            for n, v in enumerate(self.vehicles)
        ]
        if self.args.duration is not None:
            asyncio.get_running_loop().call_later(self.args.duration, stop.set)
        await stop.wait()
        _, pending = await asyncio.wait(tasks, timeout=15)
        for task in pending:
            task.cancel()
        progress.cancel()

    def summary(self) -> dict[str, Any]:
        return {
            "shard": list(self.args.shard),
            "fleet_size": self.args.count,
            "elapsed_seconds": round(time.monotonic() - self.started, 1),
            "counts": self.counts(),
            "configurations": dict(Counter(v.config.id for v in self.vehicles)),
            "handshakes": self.shared.handshakes.as_dict(),
            "telemetry_sent": self.shared.telemetry_sent,
            "outcomes": dict(Counter(o["result"] for v in self.vehicles for o in v.outcomes)),
            "vehicles": [
                {
                    "vin": v.vin,
                    "config": v.config.id,
                    "faults": [k for k, on in vars(v.faults).items() if on],
                    "state": v.state,
                    "error": v.error,
                    "outcomes": v.outcomes,
                    "update_errors": v.update_errors,
                    "installed": {ecu_id: version for ecu_id, (version, _) in v.installed.items()},
                }
                for v in self.vehicles
            ],
        }


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.count < 1:
        sys.exit("--count: at least 1")
    if not (args.credentials / "fleet.json").is_file():
        sys.exit(f"--credentials {args.credentials}: no fleet.json (run pqc_pki issue-fleet)")
    if not args.trust.is_file():
        sys.exit(f"--trust {args.trust}: no such file (the server's signing trust.pem)")
    raise_file_limit()

    async def go() -> Fleet:
        try:
            fleet = Fleet(args)
        except (PkiError, KeyError, ValueError) as exc:
            sys.exit(str(exc))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # A reconnect storm on demand: every vehicle loses its MQTT connection at once.
        loop.add_signal_handler(signal.SIGUSR1, fleet.drop_connections)
        await fleet.run(stop)
        return fleet

    fleet = asyncio.run(go())
    if args.state is not None:
        fleet.save_state(args.state)
    summary = fleet.summary()
    if args.summary:
        args.summary.write_text(json.dumps(summary, indent=1))
    brief = {k: v for k, v in summary.items() if k != "vehicles"}
    print(json.dumps(brief, indent=1))
