from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from pqc.catalogue import load_catalogue
from pqc.tests.conftest import VIN_A, FleetMaterial, RunningListeners

MANAGE = Path(settings.BASE_DIR) / "manage.py"


def _rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines()[3:]:
        cells = line.split()
        if len(cells) > 2 and cells[0].isdigit() and cells[1] != "of":
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
def test_check_prints_the_matrix_of_the_vehicle_listener(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    args = []
    for family in ("ecdsa-p256", "ml-dsa-44", "ml-dsa-65", "ml-dsa-87"):
        credentials = fleet.credentials[(VIN_A, family)]
        args += ["--cert", str(credentials.cert), "--key", str(credentials.key)]
    out = StringIO()

    call_command(
        "pqc_check", "127.0.0.1", str(running.ports["vehicle"]),
        "--ca", str(fleet.pki.ca_bundle_path), "--settle-ms", "100", *args, stdout=out,
    )  # fmt: skip

    rows = _rows(out.getvalue())
    assert len(rows) == len(load_catalogue())
    for config in load_catalogue():
        row = rows[str(config.id)]
        if config.classical:
            assert "no" in row
        else:
            assert "yes" in row, row
            assert config.group in row
            assert config.signature in row
    assert "15 of 16 configurations accepted" in out.getvalue()


@pytest.mark.slow
def test_check_without_a_client_certificate_shows_mutual_tls_refusals(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    out = StringIO()
    with pytest.raises(CommandError, match="no PQC-TLS configuration accepted"):
        call_command(
            "pqc_check", "127.0.0.1", str(running.ports["mqtt"]),
            "--ca", str(fleet.pki.ca_bundle_path), "--settle-ms", "100", stdout=out,
        )  # fmt: skip
    assert "0 of 16 configurations accepted" in out.getvalue()
    assert "certificate required" in out.getvalue()


@pytest.mark.slow
def test_check_requires_cert_and_key_together(fleet: FleetMaterial) -> None:
    with pytest.raises(CommandError, match="--cert and --key"):
        call_command("pqc_check", "127.0.0.1", "1", "--ca", str(fleet.pki.ca_bundle_path),
                     "--cert", "x.pem")  # fmt: skip


@pytest.fixture
def not_tls() -> Iterator[int]:
    """A loopback port that answers every connection in plain HTTP, so no handshake succeeds."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            with client:
                client.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    server.close()


def _pqc_check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="otaproject.settings", OTA_VAR_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, str(MANAGE), "pqc_check", *args, "--insecure", "--settle-ms", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_nothing_accepted_is_a_non_zero_exit(tmp_path, not_tls) -> None:
    done = _pqc_check(tmp_path, "127.0.0.1", str(not_tls))
    assert "0 of 16 configurations accepted" in done.stdout
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"CommandError: no PQC-TLS configuration accepted by 127.0.0.1:{not_tls}"
    )


def test_an_endpoint_that_cannot_be_reached_is_one_line(tmp_path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    done = _pqc_check(tmp_path, "127.0.0.1", str(port))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"CommandError: cannot connect to 127.0.0.1:{port}: connection refused"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["127.0.0.1", "70000"], "port: 1 to 65535; got 70000"),
        (["127.0.0.1", "0"], "port: 1 to 65535; got 0"),
        (["127.0.0.1", "8443", "--settle-ms", "-5"], "--settle-ms: 0 to 10000; got -5"),
    ],
)
def test_numbers_out_of_range_are_one_line(args, message) -> None:
    with pytest.raises(CommandError) as refused:
        call_command("pqc_check", *args, "--insecure")
    assert str(refused.value) == message
