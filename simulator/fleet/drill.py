"""A server and a fleet as real processes, the way the README runs them: for the fleet's
end-to-end test and the fleet benchmark.

`ServerProcess` prepares a private `var/` (database, PKI, signing keys, administrator, the
fleet's certificates) with `manage.py` commands and starts `manage.py runota` on free loopback
ports; `FleetProcess` starts `python -m simulator fleet` against it and reads its progress
and summary.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from simulator.fleet.console import Console

ROOT = Path(__file__).resolve().parents[2]
PROGRESS = re.compile(
    r"connected (\d+)/(\d+)\s+updating (\d+)\s+done (\d+)\s+failed (\d+)\s+handshakes/s (\d+)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(check: Any, *, timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def recreate_postgres_database(url: str) -> None:
    """Drop and create the database `url` names (through the server's `postgres` database)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"database name {name!r}: lower-case letters, digits and _ only")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL after 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@dataclass
class ServerProcess:
    """`manage.py runota` in its own process, with its own var/ and ports."""

    var: Path
    database_url: str = ""
    mqtt_url: str = ""
    redis_url: str = ""
    topic_root: str = field(default_factory=lambda: f"fleet{secrets.token_hex(3)}")
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    extra_env: dict[str, str] = field(default_factory=dict)
    # Put before `manage.py runota`, e.g. a profiler: ["bench/profile_server.py", "--out", dir].
    wrapper: list[str] = field(default_factory=list)
    vehicle_port: int = field(default_factory=free_port)
    console_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OTA_", "MQTT_", "DATABASE_", "REDIS_", "PYTEST", "DJANGO"))
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "otaproject.settings",
                "OTA_VAR_DIR": str(self.var),
                "OTA_VEHICLE_PORT": str(self.vehicle_port),
                "OTA_CONSOLE_PORT": str(self.console_port),
                "OTA_MQTT_TLS_PORT": str(self.mqtt_port),
                "OTA_PUBLIC_BASE_URL": f"https://localhost:{self.vehicle_port}",
                "OTA_CAMPAIGN_TICK_SECONDS": "1",
                "MQTT_TOPIC_ROOT": self.topic_root,
                # The default id is per host and var/: two servers on one broker would share it.
                "MQTT_BRIDGE_CLIENT_ID": f"ota-bridge-{self.topic_root}",
                # Every simulated vehicle comes from 127.0.0.1.
                "OTA_MAX_CONNECTIONS": "60000",
                "OTA_MAX_CONNECTIONS_PER_IP": "60000",
                "OTA_ADMIN_USERNAME": "fleet-admin",
                "OTA_ADMIN_PASSWORD": self.admin_password,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.mqtt_url:
            env["MQTT_URL"] = self.mqtt_url
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        return env

    def manage(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)}: {done.stderr[-2000:]}")
        return done.stdout

    def prepare(self, *, fleet: int, families: str) -> Path:
        """What scripts/serve does before runota, plus the fleet's certificates."""
        self.var.mkdir(parents=True, exist_ok=True)
        self.var.chmod(0o700)
        if self.database_url.startswith("postgres"):
            recreate_postgres_database(self.database_url)
        # scripts/serve's commands, in one process: each start of Django costs seconds.
        commands = [
            ["migrate", "--no-input", "-v0"],
            ["import_registry", str(ROOT / "config" / "ecu_registry.yaml")],
            ["pqc_pki", "init"],
            ["signing_keys", "generate", "--if-missing"],
            ["ensure_admin"],
            ["pqc_pki", "issue-fleet", "--count", str(fleet), "--out", str(self.fleet_dir),
             "--families", families],
        ]  # fmt: skip
        script = (
            "import django, json, sys; django.setup(); "
            "from django.core.management import call_command; "
            "[call_command(*c) for c in json.loads(sys.argv[1])]"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, json.dumps(commands)],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"preparing the server: {done.stderr[-3000:]}")
        return self.fleet_dir

    @property
    def fleet_dir(self) -> Path:
        return self.var / "fleet"

    def _spawn(self, arguments: list[str], log_name: str) -> subprocess.Popen:
        """Python with `arguments` in its own session, its output appended to var/LOG_NAME."""
        with (self.var / log_name).open("ab") as log:
            return subprocess.Popen(
                [sys.executable, *arguments],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, *, timeout: float = 90) -> None:
        self.process = self._spawn([*self.wrapper, "manage.py", "runota"], "runota.log")

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"runota exited with {self.process.returncode}: {self.log()}")
            return all(port_open(p) for p in (self.vehicle_port, self.console_port, self.mqtt_port))

        wait_until(up, timeout=timeout, what="runota to listen")

    def start_front(self, name: str, *, roles: str = "vehicle-api,mqtt-front",
                    timeout: float = 90) -> subprocess.Popen:  # fmt: skip
        """One more `runota --role ROLES` on this server's ports, var/, database and broker.

        Both processes must run with `OTA_REUSE_PORT=1` (in `extra_env`); the kernel then
        spreads the vehicles' connections over them. Stop it with `stop_process`.
        """
        path = self.var / f"runota-{name}.log"
        process = self._spawn(["manage.py", "runota", "--role", roles], path.name)

        def up() -> bool:
            if process.poll() is not None:
                tail = path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"runota {name} exited with {process.returncode}: {tail}")
            return "MQTT TLS front" in path.read_text(errors="replace")

        wait_until(up, timeout=timeout, what=f"runota {name} to listen")
        return process

    def log(self, tail: int = 3000) -> str:
        path = self.var / "runota.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def console(self) -> Console:
        console = Console("127.0.0.1", self.console_port, self.var / "pki" / "ca-bundle.pem")
        console.login("fleet-admin", self.admin_password)
        return console


@dataclass
class FleetProcess:
    """`python -m simulator fleet` against a ServerProcess."""

    server: ServerProcess
    count: int
    options: list[str] = field(default_factory=list)
    name: str = "fleet"
    process: subprocess.Popen | None = None

    @property
    def summary_path(self) -> Path:
        return self.server.var / f"{self.name}-summary.json"

    @property
    def progress_path(self) -> Path:
        return self.server.var / f"{self.name}-progress.log"

    def start(self) -> None:
        server = self.server
        command = [
            sys.executable, "-m", "simulator", "fleet",
            "--count", str(self.count),
            "--credentials", str(server.fleet_dir),
            "--api-port", str(server.vehicle_port),
            "--mqtt-port", str(server.mqtt_port),
            "--topic-root", server.topic_root,
            "--trust", str(server.var / "signing" / "trust.pem"),
            "--summary", str(self.summary_path),
            "--state", str(server.var / "fleet-state.json"),
            "--progress-interval", "1",
            *self.options,
        ]  # fmt: skip
        progress = self.progress_path.open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
            stdout=subprocess.DEVNULL,
            stderr=progress,
            start_new_session=True,
        )
        progress.close()

    def progress(self) -> dict[str, int]:
        """The last progress line (all zero before the first)."""
        text = self.progress_path.read_text(errors="replace") if self.progress_path.exists() else ""
        matches = PROGRESS.findall(text)
        keys = ("connected", "vehicles", "updating", "done", "failed", "handshakes_per_s")
        return dict(zip(keys, map(int, matches[-1]), strict=True)) if matches else {}

    def wait_connected(self, *, timeout: float) -> None:
        def connected() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"fleet exited: {self.progress_path.read_text()[-2000:]}")
            return self.progress().get("connected") == self.count

        wait_until(connected, timeout=timeout, what=f"{self.count} vehicles connected")

    def stop(self, *, timeout: float = 40) -> dict[str, Any]:
        """SIGINT (the vehicles say goodbye), then the summary."""
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return json.loads(self.summary_path.read_text())
