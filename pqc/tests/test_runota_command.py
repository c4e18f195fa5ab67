from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from core.mqtt.testing_broker import TEST_BROKER_URL
from pqc.catalogue import get_configuration
from pqc.client import ClientCredentials, TlsRefused, https_request, open_connection
from pqc.tests.conftest import VIN_A

pytestmark = pytest.mark.slow

MANAGE = Path(settings.BASE_DIR) / "manage.py"


def _env(var_dir: Path) -> dict[str, str]:
    # The server process gets its own SQLite file under var_dir: a DATABASE_URL from the test
    # run names a real database that the test must not migrate or write.
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="otaproject.settings",
        OTA_VAR_DIR=str(var_dir),
        OTA_MQTT_TLS_PORT="0",
        MQTT_URL=TEST_BROKER_URL,
        RUNOTA_BACKGROUND_SERVICES="pqc.tests.background_marker.start",
        OTA_TEST_MARKER=str(var_dir / "marker"),
    )
    return env


def _read_until(proc: subprocess.Popen, marker: str, deadline: float) -> str:
    seen = ""
    assert proc.stdout is not None
    while marker not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            raise AssertionError(f"runota did not print {marker!r}; got:\n{seen}")
        # Raw reads: a buffered readline() could swallow the marker into Python's buffer and
        # leave select() waiting for bytes that never come.
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            seen += os.read(proc.stdout.fileno(), 65536).decode(errors="replace")
    return seen


def test_runota_serves_all_three_listeners_on_pqc_tls(tmp_path) -> None:
    env = _env(tmp_path)
    subprocess.run([sys.executable, MANAGE, "migrate", "-v0"], env=env, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    subprocess.run([sys.executable, MANAGE, "pqc_pki", "init"], env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    subprocess.run([sys.executable, MANAGE, "pqc_pki", "issue-vehicle", VIN_A, "--out",
                    tmp_path / "car", "--family", "ml-dsa-65"],
                   env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, MANAGE, "runota", "--vehicle-port", "0", "--console-port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        banner = _read_until(
            proc, "started pqc.tests.background_marker.start", time.monotonic() + 60
        )
        ports = {
            name: int(port)
            for name, port in re.findall(
                r"^(vehicle API|console/admin|MQTT TLS front)\s+\S+:(\d+)", banner, re.MULTILINE
            )  # fmt: skip
        }
        assert set(ports) == {"vehicle API", "console/admin", "MQTT TLS front"}
        assert "ML-KEM-768 + ECDSA-P256" in banner
        assert "X25519 + ECDSA-P256" not in banner
        car = ClientCredentials.from_dir(tmp_path / "car")
        config = get_configuration(4)

        for listener in ("vehicle API", "MQTT TLS front"):
            with open_connection("127.0.0.1", ports[listener], config=config, credentials=car,
                                 server_hostname="localhost") as conn:  # fmt: skip
                assert conn.info.group == "MLKEM768"
                assert conn.info.peer_key_type == "ml-dsa-65"
        with pytest.raises(TlsRefused):
            https_request("127.0.0.1", ports["vehicle API"], "GET", "/api/v1/tls/whoami/",
                          config=config, credentials=ClientCredentials(ca=car.ca),
                          server_hostname="localhost")  # fmt: skip
        console = https_request("127.0.0.1", ports["console/admin"], "GET", "/admin/login/",
                                config=get_configuration(1), credentials=ClientCredentials(ca=car.ca),
                                server_hostname="localhost")  # fmt: skip
        assert console.status == 200
        assert console.tls.peer_key_type == "ecdsa-p256"
        assert (tmp_path / "marker").read_text() == "started"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_runota_exits_non_zero_when_a_background_service_cannot_recover(tmp_path) -> None:
    env = _env(tmp_path)
    env.update(
        RUNOTA_BACKGROUND_SERVICES="pqc.tests.failing_service.start",
        RUNOTA_SERVICE_MAX_RESTARTS="2",
    )
    subprocess.run([sys.executable, MANAGE, "migrate", "-v0"], env=env, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    subprocess.run([sys.executable, MANAGE, "pqc_pki", "init"], env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, MANAGE, "runota", "--vehicle-port", "0", "--console-port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # Restarted twice with backoff (1 s, 2 s) before giving up.
    assert output.count("ConnectionError: the service's backend refuses") >= 3, output
    assert "pqc.tests.failing_service.start failed 3 times in a row" in output
    assert time.monotonic() - started >= 3
