"""`python -m simulator`, as README runs it, prints one line for each failure a person can fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from pqc.pki import FleetPki

VIN = "WVWZZZ1JZ3W386752"


@pytest.fixture
def credentials(db, tmp_path: Path, keys: Path) -> Path:
    """What `pqc_pki issue-vehicle VIN --out DIR --family ml-dsa-65` writes, and the trust file."""
    pki = FleetPki(tmp_path / "pki")
    pki.init(families=["ml-dsa-65"])
    out = tmp_path / "car"
    pki.write_vehicle_bundle(pki.issue_vehicle(VIN, family="ml-dsa-65"), out)
    (tmp_path / "trust.pem").write_bytes(keys.read_bytes())
    return out


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _simulator(credentials: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    port = str(_closed_port())
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "--vin", VIN, "--credentials", str(credentials),
         "--trust", str(credentials.parent / "trust.pem"), "--api-port", port,
         "--mqtt-port", port, *args],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.strip().splitlines()[-1]


def test_a_configuration_for_another_certificate_family_says_so(credentials) -> None:
    line = _simulator(credentials, "--config", "1")
    assert line == (
        f"simulator: --config 1 (ML-KEM-768 + ECDSA-P256) needs an ecdsa-p256 certificate; "
        f"{credentials / 'vehicle.crt'} is ml-dsa-65: use --config 4, 7, 12 or 13"
    )


def test_credentials_for_another_vin_say_so(credentials) -> None:
    line = _simulator(credentials, "--config", "13", "--vin", "1HGCM82633A004352")
    assert line == (
        f"simulator: --vin 1HGCM82633A004352, but {credentials / 'vehicle.crt'} is for {VIN}"
    )


def test_missing_credentials_say_what_writes_them(credentials, tmp_path) -> None:
    line = _simulator(tmp_path / "nothing", "--config", "13")
    assert line == (
        f"simulator: --credentials {tmp_path / 'nothing'}: no vehicle.crt there "
        "(manage.py pqc_pki issue-vehicle VIN --out DIR writes it)"
    )


def test_an_unknown_configuration_is_one_line(credentials) -> None:
    assert _simulator(credentials, "--config", "99") == (
        "simulator: --config 99: config id 99 is not in the catalogue"
    )


def test_a_server_that_is_not_running_is_one_line(credentials) -> None:
    line = _simulator(credentials, "--config", "13")
    assert line.startswith("simulator: cannot reach the vehicle API at 127.0.0.1:")
    assert line.endswith(": connection refused (is the server running?)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--telemetry-interval", "-1"], "argument --telemetry-interval: at least 0.1; got -1"),
        (["--api-port", "70000"], "argument --api-port: 1 to 65535; got 70000"),
        (["--telemetry-count", "x"], "argument --telemetry-count: 'x' is not a number"),
        (["--cut-download-at", "0"], "argument --cut-download-at: at least 1; got 0"),
    ],
)
def test_an_option_out_of_range_is_one_line(args, message) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "--vin", VIN, *args],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == f"simulator: {message} (python -m simulator --help)\n"
