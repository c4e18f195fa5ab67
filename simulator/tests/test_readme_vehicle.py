"""README's reference vehicle, without --mqtt311, against a server with scripts/serve's defaults
(the embedded broker, which speaks MQTT 3.1.1 only)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from core.mqtt.testing_broker import free_port
from pqc.tests.test_runota_command import _read_until

pytestmark = pytest.mark.slow

MANAGE = Path(settings.BASE_DIR) / "manage.py"
VIN = "WVWZZZ1JZ3W386752"


def _env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MQTT_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="otaproject.settings",
        OTA_VAR_DIR=str(var_dir),
        OTA_MQTT_TLS_PORT="0",
        MQTT_EMBEDDED_PORT=str(free_port()),
        MQTT_TOPIC_ROOT="vehicle",
    )
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, MANAGE, *args], env=env, check=True, capture_output=True,
                   timeout=300)  # fmt: skip


def test_the_readme_command_without_mqtt311_gets_a_session(tmp_path) -> None:
    env = _env(tmp_path / "var")
    _manage(env, "migrate", "-v0")
    _manage(env, "import_registry", "-v0")
    _manage(env, "pqc_pki", "init")
    _manage(env, "signing_keys", "generate")
    car = tmp_path / "var" / "vehicles" / VIN
    _manage(env, "pqc_pki", "issue-vehicle", VIN, "--out", str(car), "--family", "ml-dsa-65")
    server = subprocess.Popen(
        [sys.executable, MANAGE, "runota", "--vehicle-port", "0", "--console-port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        banner = _read_until(server, "started telematics.bridge.start", time.monotonic() + 90)
        ports = dict(re.findall(r"^(vehicle API|MQTT TLS front)\s+\S+:(\d+)", banner, re.M))
        vehicle = subprocess.run(
            [sys.executable, "-m", "simulator", "--vin", VIN, "--credentials", str(car),
             "--config", "13", "--api-port", ports["vehicle API"],
             "--mqtt-port", ports["MQTT TLS front"],
             "--trust", str(tmp_path / "var" / "signing" / "trust.pem"),
             "--state-dir", str(tmp_path / "sim"),
             "--telemetry-count", "1", "--telemetry-interval", "0.5"],
            cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
    assert vehicle.returncode == 0, vehicle.stderr[-2000:]
    assert "falling back to MQTT 3.1.1" in vehicle.stderr
    assert f"{VIN} connected" in vehicle.stderr
