"""otactl against a live server: the real listeners on ephemeral ports, one reference vehicle
on hybrid PQC-TLS, and the installed `otactl` entry point run as a subprocess for every step
of a campaign, from login to the audit export."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from core.mqtt.testing_broker import real_publisher, sqlite_readers_do_not_lock
from core.roles import Role
from pqc.pki import FleetPki
from simulator.ota import AgentOptions
from simulator.tests.test_full_ota_flow import HYBRID, _clear_retained, _vehicle, _vin
from telematics.testing import running_bridge

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OTACTL = Path(sys.executable).parent / "otactl"
PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def operator_login(registry) -> str:
    user = User.objects.create_user("olivia", password=PASSWORD)
    for role in (Role.OPERATOR, Role.FLEET_ENGINEER):
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user.username


@pytest.fixture
def campaign_worker() -> Iterator[None]:
    """The campaign worker's ticks, every 0.3 s, as runota's background service runs them."""
    from django.db import close_old_connections

    from ota.engine import run_tick

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.3):
            run_tick()
            close_old_connections()

    thread = threading.Thread(target=loop, name="test-campaign-worker", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


class Otactl:
    def __init__(self, port: int, ca: Path, home: Path) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "OTACTL_URL": f"https://localhost:{port}",
            "OTACTL_CA": str(ca),
            "OTACTL_CONFIG": str(home / "otactl" / "config.json"),
        }
        self.env.pop("OTACTL_TOKEN", None)

    def run(self, *args: str, stdin: str = "", ok: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(OTACTL), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.home,
            timeout=90,
        )
        if ok:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "--json").stdout)


def test_otactl_drives_a_campaign_to_the_end_over_pqc_tls(
    server, operator_login, campaign_worker, tmp_path
) -> None:
    assert OTACTL.exists(), "otactl is not installed: run scripts/setup-venv"
    sqlite_readers_do_not_lock()
    cli = Otactl(server.ports["console"], server.pki.ca_bundle_path, tmp_path)

    login = cli.run("login", "-u", operator_login, "--password-stdin", stdin=PASSWORD + "\n")
    assert "logged in" in login.stdout
    config = tmp_path / "otactl" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert len(json.loads(config.read_text())["token"]) == 64

    image = tmp_path / "ecm-2.0.0.bin"
    image.write_bytes(random.randbytes(60_000))
    release = cli.json(
        "firmware", "upload", str(image), "--ecu-type", "ECM", "--version", "2.0.0",
        "--hardware-versions", "2.0,2.1",
    )  # fmt: skip
    assert (release["ecu_type"], release["version"], release["size"]) == ("ECM", "2.0.0", 60_000)
    again = cli.run(
        "firmware", "upload", str(image), "--ecu-type", "ECM", "--version", "2.0.0", ok=False
    )
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "HTTP 409: version:" in again.stderr
    assert [r["id"] for r in cli.json("firmware", "list", "--ecu-type", "ECM")["results"]] == [
        release["id"]
    ]

    copy = tmp_path / "copy.bin"
    fetched = cli.json("firmware", "download", str(release["id"]), "-o", str(copy))
    assert fetched["size"] == 60_000 and copy.read_bytes() == image.read_bytes()

    vin = _vin()
    vehicle = _vehicle(
        server, vin, config_id=HYBRID, family="ml-dsa-65", tmp_path=tmp_path,
        options=AgentOptions(),
    )  # fmt: skip
    try:
        with real_publisher(), running_bridge(shared=False):
            vehicle.start()
            campaign = cli.json(
                "campaigns", "create", "--name", "ECM 2.0 by otactl",
                "--firmware", str(release["id"]), "--vin", vin, "--waves", "100",
            )  # fmt: skip
            assert campaign["status"] == "draft"
            cli.run("campaigns", "start", str(campaign["id"]))
            watched = cli.run(
                "campaigns", "watch", str(campaign["id"]), "--interval", "0.3", "--timeout", "60"
            )
    finally:
        vehicle.stop()
        _clear_retained([vin])

    # Not a terminal: one progress line per change, the last one at 100 %.
    lines = watched.stdout.strip().splitlines()
    assert lines[-1].startswith("[" + "#" * 30 + "] 100.0% 1/1 vehicles  completed")
    assert "succeeded 1" in lines[-1]

    vehicles = cli.json("vehicles", "list", "--limit", "1000")
    assert vin in {row["vin"] for row in vehicles["results"]}
    shown = cli.json("vehicles", "show", vin)
    assert shown["vin"] == vin

    export = tmp_path / "audit.json"
    cli.run("audit", "export", "--format", "json", "--action", "campaign.", "-o", str(export))
    actions = {row["action"] for row in json.loads(export.read_text())}
    assert {"campaign.created", "campaign.started", "campaign.completed"} <= actions

    # A server certificate from another CA is refused, and says why.
    stranger = FleetPki(tmp_path / "stranger-pki")
    stranger.init(hostnames=["localhost"])
    refused = cli.run("--ca", str(stranger.ca_bundle_path), "firmware", "list", ok=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith("certificate verify failed")
    assert refused.stderr.count("\n") == 1

    token = json.loads(config.read_text())["token"]
    cli.run("logout")
    cli.env["OTACTL_TOKEN"] = token
    expired = cli.run("firmware", "list", ok=False)
    assert expired.returncode == 1
    assert expired.stderr.strip().endswith("run otactl login")
