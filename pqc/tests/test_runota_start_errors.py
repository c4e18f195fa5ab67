"""runota refuses to start with one line and a non-zero exit when something it needs is wrong."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pqc.tests.test_runota_command import MANAGE, _env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A var/ with a migrated database and a fleet PKI, as scripts/serve leaves it."""
    var_dir = tmp_path_factory.mktemp("runota-var")
    for args in (["migrate", "-v0"], ["pqc_pki", "init"]):
        subprocess.run([sys.executable, MANAGE, *args], env=_env(var_dir), check=True,
                       capture_output=True, timeout=300)  # fmt: skip
    return var_dir


def _runota(var_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, MANAGE, "runota", "--vehicle-port", "0", "--console-port", "0", *args],
        env={**_env(var_dir), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _last_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    # Nothing announced: the listeners were never up.
    assert "vehicle API" not in done.stdout
    return done.stderr.strip().splitlines()[-1]


def test_a_port_in_use_is_one_line(prepared) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _runota(prepared, "--console-port", str(port))
    assert _last_line(done) == (
        f"CommandError: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another server running? choose another port)"
    )


def test_a_default_configuration_that_is_not_accepted_is_refused(prepared) -> None:
    done = _runota(prepared, PQC_DEFAULT_CONFIG="99")
    assert _last_line(done).startswith(
        "CommandError: PQC_DEFAULT_CONFIG=99 is not an accepted configuration; choose one of "
    )


def test_a_database_that_cannot_be_opened_stops_the_start(prepared) -> None:
    done = _runota(prepared, DATABASE_URL="sqlite:////nonexistent/dir/ota.sqlite3")
    assert _last_line(done) == (
        "CommandError: database /nonexistent/dir/ota.sqlite3 is unreachable: "
        "unable to open database file (check DATABASE_URL)"
    )


def test_a_missing_server_certificate_says_how_to_make_one(prepared, tmp_path) -> None:
    var_dir = tmp_path / "var"
    shutil.copytree(prepared, var_dir)
    (var_dir / "pki" / "server" / "ecdsa-p256" / "server.crt").unlink()
    done = _runota(var_dir)
    assert _last_line(done) == (
        "CommandError: server certificate for ecdsa-p256 is missing; run `manage.py pqc_pki init`"
    )


def test_an_embedded_broker_port_in_use_is_one_line_before_anything_is_announced(
    prepared,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _runota(
            prepared,
            MQTT_URL="",
            MQTT_EMBEDDED_PORT=str(port),
            RUNOTA_BACKGROUND_SERVICES="core.mqtt.broker.start",
        )
    assert _last_line(done) == (
        f"CommandError: cannot listen on 127.0.0.1:{port} (MQTT_EMBEDDED_PORT): address already "
        "in use (another server running? choose another port)"
    )
    assert "started" not in done.stdout


def test_a_background_service_that_cannot_be_imported_stops_before_announcing(prepared) -> None:
    done = _runota(prepared, RUNOTA_BACKGROUND_SERVICES="no_such_module.start")
    assert _last_line(done) == (
        "CommandError: RUNOTA_BACKGROUND_SERVICES: cannot import no_such_module.start: "
        "No module named 'no_such_module'"
    )


def test_a_database_that_refuses_connections_is_one_line_without_retry_warnings(prepared) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    done = _runota(prepared, DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/ota")
    assert _last_line(done) == (
        f"CommandError: database ota at 127.0.0.1:{port} is unreachable: "
        "couldn't get a connection after 3.00 sec (check DATABASE_URL)"
    )
    assert "WARNING" not in done.stderr


def test_an_address_that_is_not_this_hosts_is_one_line_naming_the_setting(prepared) -> None:
    done = _runota(prepared, OTA_BIND_HOST="192.0.2.1")
    assert _last_line(done) == (
        "CommandError: cannot listen on 192.0.2.1:0: cannot assign requested address "
        "(check OTA_BIND_HOST or --host)"
    )


def test_sigterm_ends_runota_even_when_work_in_progress_never_returns(prepared) -> None:
    import signal
    import time

    from pqc.tests.test_runota_command import _read_until

    proc = subprocess.Popen(
        [sys.executable, MANAGE, "runota", "--vehicle-port", "0", "--console-port", "0"],
        env={**_env(prepared), "RUNOTA_BACKGROUND_SERVICES": "pqc.tests.stuck_service.start"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    marker = Path(_env(prepared)["OTA_TEST_MARKER"])
    marker.unlink(missing_ok=True)
    try:
        _read_until(proc, "started pqc.tests.stuck_service.start", time.monotonic() + 60)
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), "the reactor never ran"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == 1
    assert stderr.decode().strip().splitlines()[-1] == (
        "runota: work in progress did not finish within 10 s of the stop "
        "(database or broker not answering?); exiting anyway"
    )


def test_a_bridge_client_id_another_process_holds_is_one_line(prepared) -> None:
    import fcntl

    lock_dir = prepared / "mqtt-bridge"
    lock_dir.mkdir(exist_ok=True)
    with (lock_dir / "ota-bridge-eu-1.lock").open("ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = _runota(
            prepared,
            MQTT_BRIDGE_CLIENT_ID="ota-bridge-eu-1",
            MQTT_BRIDGE_LOCK_DIR=str(lock_dir),
            RUNOTA_BACKGROUND_SERVICES="telematics.bridge.start",
        )
    assert _last_line(done) == (
        "CommandError: MQTT client id 'ota-bridge-eu-1' is held by another bridge process "
        "(another server running? set MQTT_BRIDGE_CLIENT_ID to an id of its own)"
    )
