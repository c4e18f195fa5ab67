"""The fault drill: a campaign through crashes, a broker restart and a database outage.

Two `manage.py runota` processes share one PostgreSQL cluster, one Redis channel layer and one
Mosquitto, all private to the drill and on loopback, so each can be killed or stopped at will.
Reference vehicles (`python -m simulator`, each in its own process, half on each server) take a
campaign while one server is killed with SIGKILL mid-download, the other between download and
install, the broker restarts and the database stops for a while. Then the drill compares what
the vehicles know with what the server recorded::

    python -m ota.tests.fault_drill --vehicles 40 [--split-roles]

With --split-roles each server is two processes, `runota --role vehicle-api,console,mqtt-front`
and `runota --role bridge,worker`, and a kill takes both. The drill prints one JSON report and
exits 1 if any check failed. `ota/tests/test_fault_drill.py` runs it in the slow suite, with
the roles split. The subcommands `setup`, `inspect` and `vehicle` are its own helpers, run
in child processes with the drill's environment.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import getpass
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.vehicle import SimulatedVehicle

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
TERMINAL = ("succeeded", "failed", "rolled_back", "cancelled")
DOWNLOADING = ("downloading",)
# After the download, before the new software runs: the second crash lands here.
BETWEEN_DOWNLOAD_AND_INSTALL = ("downloaded", "verifying", "installing")
FAMILIES = {13: "ml-dsa-65", 1: "ecdsa-p256"}
# The drill's vehicles, told apart from any others in the database.
VIN_PREFIX = "FDRLL"
VIN_ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
OPERATOR = "drill-operator"
ECU_TYPE = "ECM"
TARGET_VERSION = "2.0.0"
# How long each vehicle spends flashing before it writes the images.
INSTALL_SECONDS = 2.0


class DrillError(RuntimeError):
    """The drill could not run (a process did not come up, a wait ran out)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DrillError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and the postmaster refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class PrivatePostgres:
    """A PostgreSQL 15 cluster of our own in a temporary directory, trust auth, loopback only."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.data = base / "pgdata"
        self.log = base / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/ota_drill"

    def init(self) -> None:
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                ]
            ),  # fmt: skip
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.start()
        import psycopg

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE ota_drill")

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database} connect_timeout=3"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} "
            "-c fsync=off -c max_connections=200"
        )
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),  # fmt: skip
            check=True,
            capture_output=True,
            timeout=90,
        )

    def stop(self, mode: str = "fast") -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"]
            ),  # fmt: skip
            capture_output=True,
            timeout=90,
        )

    def kill(self) -> None:
        """Make sure the postmaster this drill started is gone."""
        pid_file = self.data / "postmaster.pid"
        self.stop("immediate")
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self._dsn("ota_drill")) as conn:
            return conn.execute(sql, params).fetchall()


class PrivateBroker:
    """Mosquitto on a free loopback port, with persistence, to restart mid-campaign."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.dir = base / "mosquitto"
        self.dir.mkdir()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "max_queued_messages 100000\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with (self.dir / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-c", str(self.conf)], stdout=log, stderr=log, start_new_session=True
            )
        wait_until(lambda: port_open(self.port), timeout=15, what="mosquitto")

    def stop(self) -> None:
        if self.process is not None:
            _end(self.process, grace=10)
            self.process = None


def _end(process: subprocess.Popen[Any], *, grace: float) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after `grace` seconds."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


@dataclass
class Server:
    name: str
    vehicle_port: int = field(default_factory=free_port)
    console_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    # One runota with every role, or (roles split) one with the listeners and one with the
    # bridge and the background workers.
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    starts: int = 0

    def env(self) -> dict[str, str]:
        return {
            "OTA_VEHICLE_PORT": str(self.vehicle_port),
            "OTA_CONSOLE_PORT": str(self.console_port),
            "OTA_MQTT_TLS_PORT": str(self.mqtt_port),
            "OTA_PUBLIC_BASE_URL": f"https://localhost:{self.vehicle_port}",
        }


@dataclass
class Vehicle:
    vin: str
    server: Server
    config_id: int
    status_via: str
    mqtt311: bool
    state_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Fault:
    name: str
    at_seconds: float
    in_progress: int
    states: dict[str, int]


@dataclass
class DrillReport:
    vehicles: int
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    reports_stored: int = 0
    reports_applied: int = 0
    reports_acknowledged: int = 0
    telemetry_acknowledged: int = 0
    telemetry_stored: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    # "<update state>, vehicle runs <targets|sources|other>, registry <same|differs>": vehicles
    truth: dict[str, int] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    verify_audit: str = ""
    shared_subscriptions: bool = False
    split_roles: bool = False


class Drill:
    def __init__(
        self,
        *,
        vehicles: int,
        image_bytes: int,
        outage_seconds: float,
        redis_url: str,
        shared_subscriptions: bool,
        timeout: float,
        split_roles: bool = False,
        work_dir: Path | None = None,
    ) -> None:
        self.count = vehicles
        self.split_roles = split_roles
        self.image_bytes = image_bytes
        self.outage_seconds = outage_seconds
        self.redis_url = redis_url
        self.timeout = timeout
        self.keep = work_dir is not None
        self.base = work_dir or Path(tempfile.mkdtemp(prefix="ota-drill-"))
        self.base.mkdir(parents=True, exist_ok=True)
        # The postmaster runs as its own user on root machines and must reach its directory.
        self.base.chmod(0o711)
        self.var = self.base / "var"
        self.postgres = PrivatePostgres(self.base)
        self.broker = PrivateBroker(self.base)
        self.servers = [Server("a"), Server("b")]
        self.vehicles: list[Vehicle] = []
        self.report = DrillReport(
            vehicles=vehicles, shared_subscriptions=shared_subscriptions, split_roles=split_roles
        )
        self.started = time.monotonic()
        self.token = ""
        self.campaign_id = 0

    # environment and child processes ------------------------------------------------------

    def env(self, server: Server | None = None) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OTA_", "MQTT_", "DATABASE_", "REDIS_", "PYTEST", "DJANGO"))
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "otaproject.settings",
                "DATABASE_URL": self.postgres.url,
                "REDIS_URL": self.redis_url,
                "MQTT_URL": self.broker.url,
                "MQTT_TOPIC_ROOT": "vehicle",
                "MQTT_SHARED_SUBSCRIPTIONS": "1" if self.report.shared_subscriptions else "0",
                "OTA_VAR_DIR": str(self.var),
                "OTA_CAMPAIGN_TICK_SECONDS": "1",
                # A vehicle silent this long fails; long enough for every fault to pass.
                "OTA_VEHICLE_TIMEOUT_SECONDS": "120",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if server is not None:
            env.update(server.env())
        return env

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def helper(self, *args: str, timeout: float = 300) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "ota.tests.fault_drill", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise DrillError(f"fault_drill {args[0]} failed: {done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def start_server(self, server: Server) -> None:
        server.starts += 1
        if self.split_roles:
            parts = {"front": "vehicle-api,console,mqtt-front", "back": "bridge,worker"}
        else:
            parts = {"": "vehicle-api,console,mqtt-front,bridge,worker"}
        server.processes = []
        for part, roles in parts.items():
            name = f"runota-{server.name}-{part}" if part else f"runota-{server.name}"
            log = (self.base / f"{name}.log").open("ab")
            log.write(f"--- start {server.starts} at {self.elapsed():.1f} s\n".encode())
            log.flush()
            server.processes.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "runota", "--role", roles],
                    cwd=ROOT,
                    env=self.env(server),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()

    def wait_server(self, server: Server) -> None:
        def up() -> bool:
            for process in server.processes:
                if process.poll() is not None:
                    raise DrillError(f"runota {server.name} exited with {process.returncode}")
            return all(
                port_open(port)
                for port in (server.vehicle_port, server.console_port, server.mqtt_port)
            )

        wait_until(up, timeout=90, what=f"runota {server.name} to listen")

    def kill_server(self, server: Server) -> None:
        for process in server.processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # the drill ------------------------------------------------------------------------------

    def run(self) -> DrillReport:
        try:
            self._prepare()
            self._campaign()
            self._faults()
            self._finish()
            self._check()
        finally:
            self.report.seconds = round(self.elapsed(), 1)
            self.cleanup()
        return self.report

    def _prepare(self) -> None:
        self.postgres.init()
        self.broker.start()
        vins = [VIN_PREFIX + "".join(random.choices(VIN_ALPHABET, k=12)) for _ in range(self.count)]
        for index, vin in enumerate(vins):
            config_id = 13 if index % 2 == 0 else 1
            self.vehicles.append(
                Vehicle(
                    vin=vin,
                    server=self.servers[index % 2],
                    config_id=config_id,
                    status_via="mqtt" if index % 4 in (2, 3) else "rest",
                    mqtt311=index % 3 == 0,
                    state_dir=self.base / "vehicles" / vin / "state",
                    log=self.base / "vehicles" / vin / "acks.json",
                )
            )
        setup = self.helper(
            "setup",
            "--vehicles",
            json.dumps({v.vin: FAMILIES[v.config_id] for v in self.vehicles}),
            "--out",
            str(self.base / "vehicles"),
        )
        self.token = setup["token"]
        for server in self.servers:
            self.start_server(server)
        for server in self.servers:
            self.wait_server(server)
        for vehicle in self.vehicles:
            self._start_vehicle(vehicle)
        # Every vehicle registered and reported its ECUs before the campaign picks its targets.
        wait_until(
            lambda: (
                self.postgres.query(
                    "SELECT count(DISTINCT v.vin) FROM vehicles_vehicle v "
                    "JOIN ecus_ecu e ON e.vehicle_id = v.id WHERE v.vin = ANY(%s)",
                    ([v.vin for v in self.vehicles],),
                )[0][0]
                == self.count
            ),
            timeout=60 + 3 * self.count,
            what="every vehicle to register and report its VCI",
            every=0.5,
        )

    def _start_vehicle(self, vehicle: Vehicle) -> None:
        args = [
            sys.executable, "-m", "ota.tests.fault_drill", "vehicle", "--acks", str(vehicle.log),
            "--install-seconds", str(INSTALL_SECONDS),
            "--", "--vin", vehicle.vin, "--api-port", str(vehicle.server.vehicle_port),
            "--mqtt-port", str(vehicle.server.mqtt_port),
            "--credentials", str(self.base / "vehicles" / vehicle.vin),
            "--config", str(vehicle.config_id), "--trust", str(self.var / "signing" / "trust.pem"),
            "--state-dir", str(vehicle.state_dir), "--status-via", vehicle.status_via,
            "--telemetry-interval", "1",
        ]  # fmt: skip
        if vehicle.mqtt311:
            args.append("--mqtt311")
        with (vehicle.log.parent / "simulator.log").open("ab") as log:
            vehicle.process = subprocess.Popen(
                args,
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def console(self, method: str, path: str, **kwargs: Any) -> Any:
        from pqc.catalogue import get_configuration, load_catalogue
        from pqc.client import ClientCredentials, https_request

        server = self.servers[0]
        headers = {"Authorization": f"Token {self.token}", **kwargs.pop("headers", {})}
        return https_request(
            "127.0.0.1",
            server.console_port,
            method,
            path,
            headers=headers,
            config=get_configuration(1, load_catalogue(ROOT / "config" / "pqc_configs.yaml")),
            credentials=ClientCredentials(ca=self.var / "pki" / "ca-bundle.pem"),
            server_hostname="localhost",
            **kwargs,
        )

    def _campaign(self) -> None:
        boundary = uuid.uuid4().hex
        body = io.BytesIO()
        fields = (
            ("ecu_type", ECU_TYPE),
            ("version", TARGET_VERSION),
            ("hardware_versions", "2.0,2.1"),
        )
        for name, value in fields:
            body.write(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n".encode()
            )
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{ECU_TYPE}-{TARGET_VERSION}.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        # Random bytes do not compress: every download spans many Range requests.
        body.write(random.randbytes(self.image_bytes) + f"\r\n--{boundary}--\r\n".encode())
        uploaded = self.console(
            "POST",
            "/api/v1/firmware/upload",
            body=body.getvalue(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        if uploaded.status != 201:
            raise DrillError(f"firmware upload answered {uploaded.status}: {uploaded.body[:300]!r}")
        created = self.console(
            "POST",
            "/api/v1/campaigns",
            json={
                "name": "Fault drill",
                "firmware_ids": [uploaded.json()["id"]],
                "target_vins": [v.vin for v in self.vehicles],
                "wave_percentages": [100],
                # Faults may fail some vehicles; the campaign must not halt on them.
                "failure_threshold": 1.0,
                "success_threshold": 0.0,
                "max_attempts": 3,
            },
        )
        if created.status != 201:
            raise DrillError(f"campaign create answered {created.status}: {created.body[:300]!r}")
        self.campaign_id = created.json()["id"]
        started = self.console("POST", f"/api/v1/campaigns/{self.campaign_id}/start")
        if started.status != 202:
            raise DrillError(f"campaign start answered {started.status}: {started.body[:300]!r}")

    def states(self, server: Server | None = None) -> dict[str, int]:
        vins = [v.vin for v in self.vehicles if server is None or v.server is server]
        rows = self.postgres.query(
            "SELECT u.state, count(*) FROM ota_otaupdate u JOIN vehicles_vehicle v "
            "ON v.id = u.vehicle_id WHERE u.campaign_id = %s AND v.vin = ANY(%s) GROUP BY u.state",
            (self.campaign_id, vins),
        )
        return dict(rows)

    def _record(self, name: str) -> None:
        states = self.states()
        in_progress = sum(n for state, n in states.items() if state not in TERMINAL)
        self.report.faults.append(Fault(name, round(self.elapsed(), 1), in_progress, states))

    def _wait_for_state(self, server: Server, wanted: tuple[str, ...], what: str) -> None:
        try:
            wait_until(
                lambda: any(self.states(server).get(state) for state in wanted),
                timeout=120,
                what=what,
                every=0.05,
            )
        except DrillError as exc:
            raise DrillError(f"{exc}; updates by state: {self.states(server)}") from None

    def _faults(self) -> None:
        first, second = self.servers
        self._wait_for_state(first, DOWNLOADING, f"a vehicle of runota {first.name} downloading")
        self._record(f"kill -9 runota {first.name} mid-download")
        self.kill_server(first)
        self.start_server(first)
        self._wait_for_state(
            second, BETWEEN_DOWNLOAD_AND_INSTALL, f"a vehicle of runota {second.name} installing"
        )
        self._record(f"kill -9 runota {second.name} between download and install")
        self.kill_server(second)
        self.start_server(second)
        self.wait_server(first)
        self.wait_server(second)
        self._record("broker restart")
        self.broker.stop()
        self.broker.start()
        time.sleep(2)
        self._record(f"PostgreSQL stopped for {self.outage_seconds:.0f} s")
        self.postgres.stop()
        time.sleep(self.outage_seconds)
        self.postgres.start()
        self._record("PostgreSQL started again")

    def _finish(self) -> None:
        def settled() -> bool:
            states = self.states()
            return sum(states.values()) == self.count and set(states) <= set(TERMINAL)

        try:
            wait_until(settled, timeout=self.timeout, what="every update to end", every=1)
        except DrillError as exc:
            self.report.violations.append(f"{exc}: {self.states()}")
        # The last reboot's VCI and telemetry in flight reach the server before the vehicles go.
        time.sleep(5)
        for vehicle in self.vehicles:
            if vehicle.process is not None and vehicle.process.poll() is None:
                os.killpg(vehicle.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for vehicle in self.vehicles:
            if vehicle.process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                vehicle.process.wait(max(deadline - time.monotonic(), 0.1))
            if vehicle.process.poll() is None:
                os.kill(vehicle.process.pid, signal.SIGUSR1)
                time.sleep(1)
                self.report.violations.append(
                    f"{vehicle.vin}: the vehicle did not stop within 20 s of SIGTERM (its thread "
                    "stacks are in its log)"
                )
            _end(vehicle.process, grace=1)
        # Let the bridges store what the broker still holds for them.
        last = [-1]

        def stored_settles() -> bool:
            now = self.postgres.query("SELECT count(*) FROM diagnostics_telemetrysample")[0][0]
            settled_now, last[0] = now == last[0], now
            return settled_now

        with contextlib.suppress(DrillError):
            wait_until(stored_settles, timeout=60, what="telemetry to settle", every=3)

    # the checks ------------------------------------------------------------------------------

    def _check(self) -> None:
        seen = self.helper(
            "inspect",
            "--campaign",
            str(self.campaign_id),
            "--vins",
            ",".join(v.vin for v in self.vehicles),
        )
        violations = self.report.violations
        updates = {u["vin"]: u for u in seen["updates"]}
        self.report.outcomes = dict(Counter(u["state"] for u in seen["updates"]))
        self.report.drops = seen["drops"]
        acked_telemetry = 0
        lost_telemetry: list[str] = []
        acked_reports: set[str] = set()
        truth: Counter[str] = Counter()
        for vehicle in self.vehicles:
            vin = vehicle.vin
            running = _running_versions(vin, vehicle.state_dir)
            registry = seen["ecus"].get(vin, {})
            if running != {k: registry.get(k) for k in running}:
                differ = {
                    k: (v, registry.get(k)) for k, v in running.items() if registry.get(k) != v
                }
                violations.append(f"{vin}: vehicle runs / server registry differ: {differ}")
            update = updates.get(vin)
            if update is None:
                violations.append(f"{vin}: no update record")
                continue
            targets, sources = update["targets"], update["sources"]
            runs_targets = all(running.get(k) == v for k, v in targets.items())
            runs_sources = all(running.get(k) == v for k, v in sources.items())
            # An update the vehicle never planned (it gave up before its first check) has no
            # targets or sources to compare with.
            if not targets:
                runs = "what it ran before (never planned)"
            else:
                runs = "targets" if runs_targets else "sources" if runs_sources else "other"
            same = running == {k: registry.get(k) for k in running}
            truth[
                f"{update['state']}, vehicle runs {runs}, registry {'same' if same else 'differs'}"
            ] += 1
            if update["state"] == "succeeded" and not runs_targets:
                violations.append(f"{vin}: update succeeded but the vehicle runs {running}")
            if update["state"] in ("failed", "rolled_back", "cancelled") and not runs_sources:
                violations.append(
                    f"{vin}: update {update['state']} but the vehicle runs the targets"
                )
            events = Counter(update["audit"])
            terminal = sum(events[f"ota.update.{state}"] for state in TERMINAL)
            if terminal != 1 + events["ota.update.reopened"]:
                violations.append(f"{vin}: update {update['id']} has audit outcomes {dict(events)}")
            keys = Counter(r["key"] for r in update["reports"] if r["key"])
            twice = [key for key, n in keys.items() if n > 1]
            if twice:
                violations.append(f"{vin}: reports stored twice: {twice}")
            acks = _read_acks(vehicle.log)
            if acks is None:
                violations.append(
                    f"{vin}: the vehicle wrote no record of its acknowledged messages"
                )
                continue
            acked_reports.update(acks["reports"])
            missing = [r for r in acks["reports"] if f"id:{r}" not in keys]
            if missing:
                violations.append(f"{vin}: acknowledged reports not stored: {missing}")
            stored = set(seen["telemetry"].get(vin, []))
            acked_telemetry += len(acks["telemetry"])
            lost_telemetry += [f"{vin}#{seq}" for seq in acks["telemetry"] if seq not in stored]
        # A refused MQTT report is stored as refused and counted as a drop: it explains no loss.
        refused = sum(
            1
            for u in seen["updates"]
            for r in u["reports"]
            if r["source"] == "mqtt" and r["outcome"] != "applied"
        )
        unexplained = len(lost_telemetry) - max(sum(seen["drops"].values()) - refused, 0)
        if unexplained > 0:
            violations.append(
                f"{unexplained} acknowledged telemetry messages neither stored nor counted as "
                f"dropped (drops {seen['drops']}, {refused} of them refused reports): "
                f"{lost_telemetry[:10]}"
            )
        self.report.truth = dict(truth)
        self.report.telemetry_acknowledged = acked_telemetry
        self.report.telemetry_stored = sum(len(s) for s in seen["telemetry"].values())
        self.report.reports_acknowledged = len(acked_reports)
        self.report.reports_stored = sum(len(u["reports"]) for u in seen["updates"])
        self.report.reports_applied = sum(
            1 for u in seen["updates"] for r in u["reports"] if r["outcome"] == "applied"
        )
        verdict = self.manage("verify_audit")
        self.report.verify_audit = verdict.stdout.strip()
        if verdict.returncode != 0:
            violations.append(f"verify_audit exited {verdict.returncode}: {verdict.stderr[-500:]}")

    def cleanup(self) -> None:
        for vehicle in self.vehicles:
            if vehicle.process is not None:
                _end(vehicle.process, grace=5)
        for server in self.servers:
            for process in server.processes:
                _end(process, grace=10)
        self.broker.stop()
        self.postgres.kill()
        self._flush_redis()
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def _flush_redis(self) -> None:
        import redis

        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(self.redis_url, socket_timeout=3).flushdb()


def _running_versions(vin: str, state_dir: Path) -> dict[str, str]:
    """What the vehicle itself runs: its state file, or its build sheet before any update."""
    from simulator.ecus import load_build_sheet

    running = {
        ecu_id: ecu.sw_version
        for ecu_id, ecu in load_build_sheet(ROOT / "config" / "ecu_registry.yaml", vin).items()
    }
    state_file = state_dir / "state.json"
    if state_file.exists():
        ecus = json.loads(state_file.read_text()).get("ecus", {})
        running.update({ecu_id: ecu["sw_version"] for ecu_id, ecu in ecus.items()})
    return running


def _read_acks(path: Path) -> dict[str, list[Any]] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# child-process helpers ------------------------------------------------------------------------


def _django() -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _setup(args: argparse.Namespace) -> None:
    """Database, registry, PKI, signing key, an operator token and each vehicle's certificate."""
    _django()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from core.roles import Role
    from core.tokens import create_token

    quiet = io.StringIO()
    call_command("migrate", verbosity=0, stdout=quiet)
    call_command("import_registry", str(ROOT / "config" / "ecu_registry.yaml"), stdout=quiet)
    call_command("pqc_pki", "init", stdout=quiet)
    call_command("signing_keys", "generate", stdout=quiet)
    for vin, family in json.loads(args.vehicles).items():
        call_command(
            "pqc_pki", "issue-vehicle", vin, "--out", str(Path(args.out) / vin),
            "--family", family, stdout=quiet,
        )  # fmt: skip
    user = User.objects.create_user(OPERATOR)
    # Uploading firmware takes a fleet engineer, running a campaign an operator.
    for role in (Role.FLEET_ENGINEER, Role.OPERATOR):
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    print(json.dumps({"token": create_token(user, actor=user, lifetime=None)[1]}))


def _inspect(args: argparse.Namespace) -> None:
    """What the server recorded about the drill's vehicles, as JSON."""
    _django()
    from core.models import AuditEvent
    from diagnostics.models import TelemetrySample
    from diagnostics.services import drop_counts
    from ecus.models import Ecu
    from ota.models import OtaUpdate, UpdateReport

    vins = args.vins.split(",")
    updates = []
    for update in OtaUpdate.objects.filter(campaign_id=args.campaign).select_related("vehicle"):
        updates.append(
            {
                "id": update.pk,
                "vin": update.vehicle.vin,
                "state": update.state,
                "targets": {i["ecu_id"]: i["to_version"] for i in update.plan.get("items", [])},
                "sources": update.source_versions(),
                "audit": list(
                    AuditEvent.objects.filter(object_type="ota_update", object_id=str(update.pk))
                    .order_by("pk")
                    .values_list("action", flat=True)
                ),
                "reports": [
                    {"key": key, "outcome": outcome, "source": source}
                    for key, outcome, source in UpdateReport.objects.filter(update=update)
                    .order_by("pk")
                    .values_list("report_key", "outcome", "source")
                ],
            }
        )
    ecus: dict[str, dict[str, str]] = {}
    for vin, ecu_id, version in Ecu.objects.filter(vehicle__vin__in=vins).values_list(
        "vehicle__vin", "ecu_id", "sw_version"
    ):
        ecus.setdefault(vin, {})[ecu_id] = version
    telemetry: dict[str, list[int]] = {}
    for vin, seq in TelemetrySample.objects.filter(vehicle__vin__in=vins).values_list(
        "vehicle__vin", "seq"
    ):
        telemetry.setdefault(vin, []).append(seq)
    print(
        json.dumps(
            {"updates": updates, "ecus": ecus, "telemetry": telemetry, "drops": drop_counts()}
        )
    )


class AckLedger:
    """Which of a vehicle's messages the server acknowledged: a PUBACK for MQTT, 2xx for HTTPS.

    paho calls `on_publish` from its network thread while holding its own outgoing-message lock,
    and `publish` takes that lock too: the ledger's lock is therefore never held across a call
    into paho, or a publisher and a PUBACK wait for each other forever.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._published: dict[int, tuple[str, Any]] = {}
        self._acknowledged: set[int] = set()
        self._http_reports: list[str] = []

    def on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if not getattr(reason, "is_failure", False):
            with self._lock:
                self._acknowledged.add(mid)

    def watch(self, vehicle: SimulatedVehicle) -> None:
        """Record what `vehicle` publishes and which of it the broker acknowledges."""
        vehicle.client.on_publish = self.on_publish
        publish = vehicle.publish

        def published_and_recorded(
            kind: str, document: dict[str, Any], *, retain: bool = False
        ) -> Any:
            info = publish(kind, document, retain=retain)
            self.published(info.mid, kind, document)
            return info

        vehicle.publish = published_and_recorded  # type: ignore[method-assign]

    def published(self, mid: int, kind: str, document: dict[str, Any]) -> None:
        # The PUBACK may come before this call: `record` pairs the two whatever their order.
        with self._lock:
            if kind == "telemetry":
                self._published[mid] = ("telemetry", document["seq"])
            elif kind == "ota/status":
                self._published[mid] = ("reports", document["report_id"])

    def answered(self, report_id: str) -> None:
        with self._lock:
            self._http_reports.append(report_id)

    def record(self) -> dict[str, list[Any]]:
        with self._lock:
            record: dict[str, list[Any]] = {"telemetry": [], "reports": list(self._http_reports)}
            for mid, (kind, key) in self._published.items():
                if mid in self._acknowledged:
                    record[kind].append(key)
        return record


def _vehicle(args: argparse.Namespace) -> None:
    """`python -m simulator` with a record of which of its messages the server acknowledged.

    MQTT: a telemetry message or OTA status report counts once its PUBACK arrived; HTTPS: a
    status report counts once it was answered 2xx. The record is written when the vehicle stops.
    """

    import simulator.__main__ as simulator_main
    from simulator.https import VehicleHttps
    from simulator.ota import OtaAgent
    from simulator.vehicle import SimulatedVehicle

    args_install_seconds = args.install_seconds
    ledger = AckLedger()
    original_init = SimulatedVehicle.__post_init__
    original_send = VehicleHttps.send
    original_install = OtaAgent._install

    def init(self: SimulatedVehicle) -> None:
        original_init(self)
        ledger.watch(self)

    def send(self: VehicleHttps, method: str, path: str, *, json: Any = None) -> Any:
        response = original_send(self, method, path, json=json)
        if path == "/api/v1/ota/status" and 200 <= response.status < 300:
            ledger.answered(json["report_id"])
        return response

    def install(self: OtaAgent, *args: Any, **kwargs: Any) -> Any:
        # Flashing a real ECU takes a while: the window the second crash has to hit.
        time.sleep(args_install_seconds)
        return original_install(self, *args, **kwargs)

    def write_record() -> None:
        draft = Path(f"{args.acks}.tmp")
        draft.write_text(json.dumps(ledger.record()))
        draft.replace(args.acks)

    def keep_writing() -> None:
        # A vehicle that hangs and has to be killed still leaves its record.
        while True:
            time.sleep(2)
            write_record()

    SimulatedVehicle.__post_init__ = init  # type: ignore[method-assign]
    VehicleHttps.send = send  # type: ignore[method-assign]
    OtaAgent._install = install  # type: ignore[method-assign]
    # The drill asks a vehicle that does not stop for its threads' stacks.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    threading.Thread(target=keep_writing, daemon=True).start()
    try:
        simulator_main.main(args.simulator)
    finally:
        write_record()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ota.tests.fault_drill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--vehicles", type=int, default=40)
    parser.add_argument("--image-bytes", type=int, default=2 * 1024**2)
    parser.add_argument("--outage-seconds", type=float, default=20.0)
    parser.add_argument(
        "--redis-url", default=os.environ.get("FAULT_DRILL_REDIS_URL", "redis://127.0.0.1:6379/13")
    )
    parser.add_argument("--shared-subscriptions", action="store_true")
    parser.add_argument(
        "--split-roles",
        action="store_true",
        help="each server as two processes: the listeners, and the bridge with the workers",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="for the updates to end")
    parser.add_argument("--keep", type=Path, help="work here and keep the logs")
    helpers = parser.add_subparsers(dest="helper")
    setup = helpers.add_parser("setup")
    setup.add_argument("--vehicles", dest="vehicle_families", required=True)
    setup.add_argument("--out", required=True)
    inspect = helpers.add_parser("inspect")
    inspect.add_argument("--campaign", type=int, required=True)
    inspect.add_argument("--vins", required=True)
    vehicle = helpers.add_parser("vehicle")
    vehicle.add_argument("--acks", required=True)
    vehicle.add_argument("--install-seconds", type=float, default=0.0)
    vehicle.add_argument("simulator", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.helper == "setup":
        args.vehicles = args.vehicle_families
        _setup(args)
        return 0
    if args.helper == "inspect":
        _inspect(args)
        return 0
    if args.helper == "vehicle":
        args.simulator = [a for a in args.simulator if a != "--"]
        _vehicle(args)
        return 0
    drill = Drill(
        vehicles=args.vehicles,
        image_bytes=args.image_bytes,
        outage_seconds=args.outage_seconds,
        redis_url=args.redis_url,
        shared_subscriptions=args.shared_subscriptions,
        timeout=args.timeout,
        split_roles=args.split_roles,
        work_dir=args.keep,
    )
    report = drill.run()
    print(json.dumps(asdict(report), indent=1))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
