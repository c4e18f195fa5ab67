"""/readyz: every dependency is checked, each failing check makes the process unready."""

from __future__ import annotations

import datetime
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import OperationalError, connection

from core import health

pytestmark = pytest.mark.django_db

REDIS_TEST_URL = "redis://127.0.0.1:6379/11"


def write_certificate(path: Path, *, days_left: float) -> None:
    """A certificate that became valid yesterday (or long ago, for an expired one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ready-test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=max(1, 30 - days_left)))
        .not_valid_after(now + datetime.timedelta(days=days_left))
        .sign(key, hashes.SHA256())
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the kernel completes them unaccepted)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def ready_environment(settings, tmp_path, listening_port) -> Iterator[Path]:
    """A process whose dependencies all answer: broker port open, storage, valid certificates."""
    settings.MQTT_URL = f"mqtt://127.0.0.1:{listening_port}"
    settings.PKI_DIR = tmp_path / "pki"
    settings.PACKAGE_DIR = tmp_path / "packages"
    settings.MEDIA_ROOT = tmp_path / "media"
    write_certificate(settings.PKI_DIR / "ca" / "ml-dsa-65" / "ca.crt", days_left=3650)
    write_certificate(settings.PKI_DIR / "server" / "ml-dsa-65" / "server.crt", days_left=300)
    yield settings.PKI_DIR
    for name in list(health.background_services()):
        health.forget(name)


def readyz(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    return response.status_code, response.json()


def test_ready_when_every_check_passes_and_every_service_runs(client) -> None:
    health.set_state("telematics.bridge.start", health.RUNNING)
    status, body = readyz(client)
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["services"] == {"telematics.bridge.start": "running"}
    assert set(body["checks"]) == {"database", "channel_layer", "broker", "storage", "certificates"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["certificates"]["certificates"]["server/ml-dsa-65"]["days_left"] > 299
    assert body["checks"]["storage"]["directories"]["PACKAGE_DIR"]["free_bytes"] > 0


def test_a_database_that_does_not_answer_makes_the_process_unready(client, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)
    status, body = readyz(client)
    assert status == 503
    assert body["checks"]["database"] == {"ok": False, "error": "OperationalError"}
    assert body["checks"]["broker"]["ok"] is True


def test_a_channel_layer_that_cannot_be_reached_makes_the_process_unready(client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{closed_port()}/11"]},
        }
    }
    status, body = readyz(client)
    assert status == 503
    assert body["checks"]["channel_layer"]["ok"] is False
    assert body["checks"]["channel_layer"]["backend"] == "RedisChannelLayer"


def test_the_redis_channel_layer_passes_its_round_trip(client, settings) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_TEST_URL]},
        }
    }
    check = health.check_channel_layer()
    assert check == {"ok": True, "backend": "RedisChannelLayer"}


def test_the_check_leaves_the_shared_layer_receiving_on_its_own_loop(settings) -> None:
    """As the bridge's worker does: the shared Redis layer receives on another event loop."""
    import asyncio

    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_TEST_URL]},
        }
    }
    shared = get_channel_layer()
    received: list[dict] = []
    channel_ready = threading.Event()

    def bridge_loop() -> None:
        async def receive_one() -> None:
            channel = await shared.new_channel("bridge.")
            received.append({"channel": channel})
            channel_ready.set()
            received.append(await asyncio.wait_for(shared.receive(channel), 10))
            # No close_pools() here: it flushes the layer's connections on every loop, the
            # sender's included while it may still be using them. Closing this loop (at the
            # end of asyncio.run) flushes this loop's connections only.

        asyncio.run(receive_one())

    thread = threading.Thread(target=bridge_loop, daemon=True)
    thread.start()
    assert channel_ready.wait(10)
    for _ in range(2):
        assert health.check_channel_layer() == {"ok": True, "backend": "RedisChannelLayer"}

    async def send() -> None:
        await asyncio.wait_for(
            shared.send(received[0]["channel"], {"type": "ota.test", "n": 1}), 10
        )

    from asgiref.sync import async_to_sync

    async_to_sync(send)()
    thread.join(15)
    assert received[-1] == {"type": "ota.test", "n": 1}


def test_a_broker_that_refuses_connections_makes_the_process_unready(client, settings) -> None:
    port = closed_port()
    settings.MQTT_URL = f"mqtt://127.0.0.1:{port}"
    status, body = readyz(client)
    assert status == 503
    broker = body["checks"]["broker"]
    assert (broker["ok"], broker["port"], broker["error"]) == (
        False,
        port,
        "ConnectionRefusedError",
    )


def test_storage_that_is_not_a_writable_directory_makes_the_process_unready(
    client, settings, tmp_path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings.PACKAGE_DIR = blocker / "packages"
    status, body = readyz(client)
    assert status == 503
    directories = body["checks"]["storage"]["directories"]
    assert directories["PACKAGE_DIR"]["ok"] is False
    assert directories["MEDIA_ROOT"]["ok"] is True


def test_storage_short_of_free_space_makes_the_process_unready(client, settings) -> None:
    settings.OTA_READY_MIN_FREE_BYTES = 10**18
    status, body = readyz(client)
    assert status == 503
    assert (
        body["checks"]["storage"]["directories"]["MEDIA_ROOT"]["error"] == "too little free space"
    )


def test_an_expired_server_certificate_makes_the_process_unready(client, ready_environment):
    write_certificate(ready_environment / "server" / "ml-dsa-65" / "server.crt", days_left=-1)
    status, body = readyz(client)
    assert status == 503
    server = body["checks"]["certificates"]["certificates"]["server/ml-dsa-65"]
    assert server["ok"] is False and server["days_left"] < 0


def test_a_ca_close_to_expiry_is_flagged_but_still_ready(client, ready_environment) -> None:
    write_certificate(ready_environment / "ca" / "ml-dsa-65" / "ca.crt", days_left=5)
    status, body = readyz(client)
    assert status == 200
    assert body["checks"]["certificates"]["certificates"]["ca/ml-dsa-65"]["expiring"] is True


def test_no_certificates_at_all_makes_the_process_unready(client, settings, tmp_path) -> None:
    settings.PKI_DIR = tmp_path / "empty-pki"
    status, body = readyz(client)
    assert status == 503
    assert "pqc_pki init" in body["checks"]["certificates"]["error"]


def test_checks_left_out_by_settings_are_not_run(client, settings) -> None:
    settings.MQTT_URL = f"mqtt://127.0.0.1:{closed_port()}"
    settings.OTA_READINESS_CHECKS = ["database", "storage"]
    status, body = readyz(client)
    assert status == 200
    assert set(body["checks"]) == {"database", "storage"}


def test_a_failed_service_makes_the_process_unready_without_its_error_text(client) -> None:
    health.set_state("ota.worker.start", health.RUNNING)
    health.set_state("telematics.bridge.start", health.FAILED, error="secret internal detail")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["services"]["telematics.bridge.start"] == "failed"
    assert "secret internal detail" not in response.content.decode()


def test_a_bridge_that_lost_its_broker_makes_the_process_unready(client) -> None:
    health.set_state("telematics.bridge.start", health.RUNNING)
    health.set_details("telematics.bridge.start", connected=False)
    assert client.get("/readyz").status_code == 503


def test_a_service_that_dies_under_supervision_shows_as_restarting(client) -> None:
    stop = threading.Event()
    crashed = threading.Event()

    def crashing(stop_event: threading.Event) -> None:
        crashed.set()
        raise RuntimeError("channel layer gone")

    thread = threading.Thread(
        target=health.supervise,
        args=("crashing.start", crashing, stop),
        kwargs={"max_restarts": 3, "on_give_up": lambda name: None, "first_backoff": 5.0},
        daemon=True,
    )
    thread.start()
    try:
        assert crashed.wait(5)
        for _ in range(50):
            if health.background_services().get("crashing.start", {}).get("state") != "running":
                break
            stop.wait(0.05)
        assert client.get("/readyz").status_code == 503
    finally:
        stop.set()
        thread.join(10)
