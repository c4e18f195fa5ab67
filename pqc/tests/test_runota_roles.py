"""runota --role: a process runs only some parts; several share a port with OTA_REUSE_PORT."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from otaproject.management.commands.runota import ROLES, role_of_service
from pqc.catalogue import get_configuration
from pqc.client import ClientCredentials, https_request
from pqc.tests.conftest import FleetMaterial
from pqc.tests.test_runota_command import MANAGE, _env, _read_until

CONFIG_ECDSA = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def access_lines(procs: list[subprocess.Popen], *, wanted: int, seconds: float) -> list[dict]:
    """The ota.access JSON lines the processes print, until `wanted` of them or the deadline."""
    seen = {proc.pid: "" for proc in procs}
    deadline = time.monotonic() + seconds
    found: list[dict] = []
    while len(found) < wanted and time.monotonic() < deadline:
        ready, _, _ = select.select([p.stdout for p in procs], [], [], 0.2)
        for proc in procs:
            if proc.stdout in ready:
                seen[proc.pid] += os.read(proc.stdout.fileno(), 65536).decode(errors="replace")
        found = [
            json.loads(line)
            for text in seen.values()
            for line in text.splitlines()
            if line.startswith("{") and '"logger": "ota.access"' in line
        ]
    return found


def test_background_services_belong_to_the_bridge_or_the_worker_role() -> None:
    assert role_of_service("core.mqtt.broker.start") == "bridge"
    assert role_of_service("telematics.bridge.start") == "bridge"
    for worker in ("ota.worker.start", "webhooks.worker.start", "diagnostics.worker.start"):
        assert role_of_service(worker) == "worker"
    assert ROLES == ("vehicle-api", "console", "mqtt-front", "bridge", "worker")


@pytest.mark.slow
def test_split_roles_share_a_port_and_run_only_their_parts(
    tmp_path: Path, fleet: FleetMaterial
) -> None:
    # The session's fleet PKI; the console's /healthz needs a database but no tables.
    env = {**_env(tmp_path), "OTA_PKI_DIR": str(fleet.pki.root)}
    bad = subprocess.run(
        [sys.executable, MANAGE, "runota", "--role", "console,everything"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == (
        "CommandError: --role: everything is not a role; "
        "choose from vehicle-api,console,mqtt-front,bridge,worker"
    )

    console_port, metrics_port = free_port(), free_port()
    shared = {**env, "OTA_REUSE_PORT": "1", "OTA_LOG_FORMAT": "json"}
    command = [sys.executable, MANAGE, "runota", "--console-port", str(console_port), "--role"]
    with_worker = subprocess.Popen(
        [*command, "console,worker"],
        env={**shared, "OTA_METRICS_PORT": str(metrics_port)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    console_only = subprocess.Popen(
        [*command, "console"], env=shared,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        first = _read_until(with_worker, "metrics ", time.monotonic() + 60)
        second = _read_until(console_only, "groups offered", time.monotonic() + 60)
        for banner in (first, second):
            assert f"console/admin  https://127.0.0.1:{console_port}" in banner
            assert "vehicle API" not in banner and "MQTT TLS front" not in banner
        assert "started pqc.tests.background_marker.start" in first
        assert "started " not in second
        # Both processes answer on the one port (the kernel picks one per connection).
        for _ in range(4):
            answer = https_request(
                "127.0.0.1", console_port, "GET", "/healthz",
                config=get_configuration(CONFIG_ECDSA),
                credentials=ClientCredentials(ca=fleet.pki.ca_bundle_path),
                server_hostname="localhost",
            )  # fmt: skip
            assert answer.status == 200
        # One JSON access line per request, from whichever process served it.
        lines = access_lines([with_worker, console_only], wanted=4, seconds=10)
        assert {(line["listener"], line["path"], line["status"]) for line in lines} == {
            ("console", "/healthz", 200)
        }
        assert all(len(line["request_id"]) == 32 for line in lines)
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"ota_tls_handshakes_total" in response.read()
    finally:
        for proc in (with_worker, console_only):
            proc.terminate()
            proc.wait(timeout=30)
