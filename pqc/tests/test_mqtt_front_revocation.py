from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from pqc.catalogue import get_configuration, load_catalogue
from pqc.client import ClientCredentials, MqttTlsTunnel, PqcTlsConnection, open_connection
from pqc.pki import serial_hex
from pqc.tests.conftest import MOSQUITTO, FleetMaterial, RunningListeners, start_listeners
from pqc.tests.test_mqtt_front_end_to_end import WAIT, _close, _session

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

VIN_C = "WVWZZZ1JZXW000003"
CHECK_SECONDS = 1.0
MANAGE = Path(django_settings.BASE_DIR) / "manage.py"


@pytest.fixture
def server(fleet: FleetMaterial, settings) -> Iterator[RunningListeners]:
    from pqc.server import stop_in_thread

    settings.OTA_REVOCATION_CHECK_SECONDS = CHECK_SECONDS
    running = start_listeners(fleet, hook=None, mqtt_upstream=MOSQUITTO, allow_classical=False)
    yield running
    stop_in_thread(running.listeners)


@pytest.fixture
def credentials(fleet: FleetMaterial) -> ClientCredentials:
    # A certificate of its own: the session's fleet is shared and this one gets revoked.
    return fleet.issue(VIN_C, "ecdsa-p256", name=f"revoked-{uuid.uuid4().hex[:8]}")


def _connect(server: RunningListeners, port: str, credentials: ClientCredentials) -> dict:
    return {
        "config": get_configuration(1, load_catalogue()),
        "credentials": credentials,
        "server_hostname": "localhost",
    } | ({"host": server.host, "port": server.ports[port]} if port else {})


def _revoke_in_another_process(fleet: FleetMaterial, serial: int, var_dir: Path) -> None:
    """`manage.py pqc_pki revoke`, as an operator would run it beside the server."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="otaproject.settings",
        OTA_VAR_DIR=str(var_dir),
        OTA_PKI_DIR=str(fleet.pki.root),
    )
    for command in (["migrate", "-v0"], ["pqc_pki", "revoke", serial_hex(serial)]):
        subprocess.run([sys.executable, MANAGE, *command], env=env, check=True,
                       capture_output=True, timeout=120)  # fmt: skip


def _closed_within(conn: PqcTlsConnection, limit: float) -> float:
    started = time.monotonic()
    conn.sock.settimeout(limit)
    while conn.recv():
        pass
    return time.monotonic() - started


def test_revocation_closes_open_mqtt_and_https_connections_within_the_check_interval(
    server: RunningListeners, fleet: FleetMaterial, credentials: ClientCredentials, tmp_path: Path
) -> None:
    tunnel = MqttTlsTunnel(
        host=server.host,
        port_remote=server.ports["mqtt"],
        connect=_connect(server, "", credentials),
    ).start()
    mqtt = _session(VIN_C, "127.0.0.1", tunnel.port)
    https = open_connection(**_connect(server, "vehicle", credentials))
    try:
        assert mqtt.connected.wait(WAIT)
        assert mqtt.reason[0] == 0
        # One request on a keep-alive connection, which then stays open.
        https.sendall(b"GET /api/v1/no-such-endpoint/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert https.recv().startswith(b"HTTP/1.1 404")

        _revoke_in_another_process(fleet, fleet.serial_of(credentials), tmp_path)
        revoked_at = time.monotonic()
        https_closed_after = _closed_within(https, WAIT)
        assert mqtt.disconnected.wait(WAIT)
        mqtt_closed_after = time.monotonic() - revoked_at
    finally:
        https.close()
        _close(mqtt)
        tunnel.stop()
    bound = CHECK_SECONDS + 1.0
    assert https_closed_after < bound
    assert mqtt_closed_after < bound
    assert server.listeners.open_connections.closed_total >= 2
