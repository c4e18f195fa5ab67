"""Vehicle messages that meet a database outage: kept unacknowledged and retried, never lost."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
from django.db import OperationalError

import telematics.ingest
from core import health
from core.mqtt.testing_broker import (
    PrivateMosquitto,
    connect_probe,
    real_publisher,
    sqlite_readers_do_not_lock,
    wait_for,
)
from diagnostics.models import InboundDrop, TelemetrySample
from diagnostics.services import drops
from diagnostics.tests.factories import encode, telemetry
from ota.tests.fault_drill import PG_BIN, PrivatePostgres
from telematics.ingest import DatabaseUnavailable, handle_batch, handle_batch_through_outage
from telematics.testing import running_bridge


def _outage(calls: int, real):
    """`real`, failing as a refused connection does for its first `calls` calls."""
    attempts = {"count": 0}

    def store(*args, **kwargs):
        attempts["count"] += 1
        if attempts["count"] <= calls:
            raise OperationalError("connection refused: is the server running?")
        return real(*args, **kwargs)

    return store, attempts


@pytest.fixture(autouse=True)
def _no_drops_left_in_memory():
    drops.forget_pending_drops()
    yield
    drops.forget_pending_drops()


@pytest.mark.django_db
def test_telemetry_in_an_outage_is_neither_stored_nor_dropped_and_is_stored_once_after(vehicle):
    topic = f"vehicle/{vehicle.vin}/telemetry"
    message = (topic, encode(telemetry(vehicle.vin, seq=3)))
    store, _ = _outage(1, telematics.ingest.record_telemetry_batch)
    with mock.patch.object(telematics.ingest, "record_telemetry_batch", store):
        with pytest.raises(DatabaseUnavailable) as raised:
            handle_batch([message])
        assert raised.value.pending == [0]
        assert TelemetrySample.objects.count() == 0
        assert not InboundDrop.objects.exists()
        assert handle_batch([message])["accepted"] == 1
    assert TelemetrySample.objects.filter(vehicle=vehicle).count() == 1
    assert not InboundDrop.objects.exists()


@pytest.mark.django_db
def test_an_outage_names_what_is_pending_and_keeps_what_was_settled(vehicle):
    topic = f"vehicle/{vehicle.vin}/telemetry"
    messages = [
        (topic, b"{not json"),
        (topic, encode(telemetry(vehicle.vin, seq=1))),
        (f"vehicle/{vehicle.vin}/status", encode({"vin": vehicle.vin, "state": "online"})),
        (topic, encode(telemetry(vehicle.vin, seq=2))),
    ]
    store, _ = _outage(1, telematics.ingest.record_presence)
    with (
        mock.patch.object(telematics.ingest, "record_presence", store),
        pytest.raises(DatabaseUnavailable) as raised,
    ):
        handle_batch(messages)
    assert raised.value.pending == [1, 2, 3]
    assert raised.value.outcomes == {"dropped:bad_json": 1}
    assert InboundDrop.objects.get(reason="bad_json").count == 1
    assert TelemetrySample.objects.count() == 0


@pytest.mark.django_db
def test_a_message_the_database_refuses_is_still_dropped_and_counted_once(vehicle):
    from django.db import DataError

    def refuse(*args, **kwargs):
        raise DataError("value out of range")

    message = (f"vehicle/{vehicle.vin}/telemetry", encode(telemetry(vehicle.vin)))
    with (
        mock.patch.object(telematics.ingest, "record_telemetry_batch", refuse),
        mock.patch.object(telematics.ingest, "record_telemetry", refuse),
    ):
        outcomes = handle_batch([message])
    assert outcomes == {"dropped:store_failed": 1}
    assert InboundDrop.objects.get(reason="store_failed").count == 1


@pytest.mark.django_db
def test_a_drop_counted_in_an_outage_is_kept_and_written_when_the_database_answers(vehicle):
    from diagnostics.models import InboundDrop as Model

    with mock.patch.object(
        Model.objects, "filter", side_effect=OperationalError("server closed the connection")
    ):
        outcomes = handle_batch([(f"vehicle/{vehicle.vin}/telemetry", b"{not json")])
    assert outcomes == {"dropped:bad_json": 1}
    assert not InboundDrop.objects.exists()
    assert drops.pending_drops() == {"bad_json": 1}

    outcomes = handle_batch([(f"vehicle/{vehicle.vin}/telemetry", b"[1]")])
    assert outcomes == {"dropped:bad_schema": 1}
    assert drops.pending_drops() == {}
    assert drops.drop_counts() == {"bad_json": 1, "bad_schema": 1}


@pytest.mark.django_db
def test_the_channels_worker_holds_a_batch_through_a_short_outage(vehicle):
    message = (f"vehicle/{vehicle.vin}/telemetry", encode(telemetry(vehicle.vin, seq=4)))
    store, attempts = _outage(2, telematics.ingest.record_telemetry_batch)
    with mock.patch.object(telematics.ingest, "record_telemetry_batch", store):
        outcomes = handle_batch_through_outage([message], patience=10)
    assert outcomes == {"accepted": 1}
    assert attempts["count"] == 3
    assert TelemetrySample.objects.filter(vehicle=vehicle).count() == 1


@pytest.mark.django_db
def test_the_channels_worker_counts_a_batch_the_outage_outlasted(vehicle):
    message = (f"vehicle/{vehicle.vin}/telemetry", encode(telemetry(vehicle.vin, seq=5)))
    store, _ = _outage(1000, telematics.ingest.record_telemetry_batch)
    with mock.patch.object(telematics.ingest, "record_telemetry_batch", store):
        outcomes = handle_batch_through_outage([message], patience=0.2)
    assert outcomes == {"dropped:database_unavailable": 1}
    assert InboundDrop.objects.get(reason="database_unavailable").count == 1
    assert TelemetrySample.objects.count() == 0


@pytest.mark.django_db
def test_a_query_error_is_not_taken_for_an_outage():
    import psycopg

    from core.db import is_database_unavailable

    assert is_database_unavailable(psycopg.OperationalError("connection is bad"))
    assert is_database_unavailable(psycopg.InterfaceError("the connection is closed"))
    assert not is_database_unavailable(psycopg.errors.DeadlockDetected("deadlock detected"))
    assert not is_database_unavailable(psycopg.errors.NumericValueOutOfRange("out of range"))


# Through a real broker ------------------------------------------------------------------------


@pytest.fixture
def broker(settings):
    mosquitto = PrivateMosquitto()
    mosquitto.start()
    settings.MQTT_URL = mosquitto.url
    settings.MQTT_TOPIC_ROOT = "vehicle"
    try:
        yield mosquitto
    finally:
        mosquitto.cleanup()


@pytest.fixture
def registered(registry):
    from vehicles.services import register_vehicle

    vin = "TEST" + "".join(random.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(13))
    return register_vehicle(vin=vin, model_name="Aurora", model_year=2026)


@pytest.mark.django_db(transaction=True)
def test_bridge_holds_the_acknowledgement_through_an_outage_and_reports_itself_unready(
    broker, registered
):
    from core.mqtt.publisher import get_publisher

    sqlite_readers_do_not_lock()
    service = "test-bridge-outage"
    store, attempts = _outage(2, telematics.ingest.record_telemetry_batch)
    acked: list[int] = []
    healthy_during_outage: list[bool] = []
    try:
        with (
            mock.patch.object(telematics.ingest, "record_telemetry_batch", store),
            running_bridge(shared=False, batch_size=1) as bridge,
        ):
            bridge.service_name = service
            real_ack = bridge.client.ack
            bridge.client.ack = lambda mid, qos: (acked.append(mid), real_ack(mid, qos))
            with real_publisher():
                get_publisher().publish(
                    f"vehicle/{registered.vin}/telemetry",
                    encode(telemetry(registered.vin, seq=9)),
                    qos=1,
                    retain=False,
                )
                wait_for(lambda: attempts["count"] >= 2, timeout=10)
                healthy_during_outage.append(health.healthy())
                assert acked == []
                assert health.background_services()[service]["details"]["database"] is False
                wait_for(lambda: acked, timeout=10)
                assert health.healthy()
    finally:
        health.forget(service)
    assert healthy_during_outage == [False]
    assert TelemetrySample.objects.filter(vehicle=registered).count() == 1
    assert not InboundDrop.objects.exists()
    assert bridge.stats.outcomes == {"accepted": 1}
    assert threading.active_count() < 100


# A real PostgreSQL stopped under a running bridge -----------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DRILL_VIN = "TEST1234567890ABC"
PUBLISHED = 240
PUBLISH_RATE_PER_S = 30
OUTAGE_AFTER_S = 2.0
OUTAGE_SECONDS = 4.0


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.slow
@pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="PostgreSQL 15 server not installed")
def test_every_message_published_through_a_postgresql_restart_is_stored_or_counted(capsys):
    # The postmaster runs as "postgres" when we are root: it must reach its directory.
    tmp_path = Path(tempfile.mkdtemp(prefix="ota-outage-"))
    tmp_path.chmod(0o711)
    postgres = PrivatePostgres(tmp_path)
    mosquitto = PrivateMosquitto()
    bridge = None
    bridge_log = None
    publisher = None
    try:
        postgres.init()
        mosquitto.start()
        env = {
            **os.environ,
            "DATABASE_URL": postgres.url,
            "MQTT_URL": mosquitto.url,
            "MQTT_TOPIC_ROOT": "vehicle",
            "PYTHONUNBUFFERED": "1",
        }
        _manage(env, "migrate", "--verbosity", "0")
        _manage(env, "import_registry", str(ROOT / "config" / "ecu_registry.yaml"))
        _manage(
            env,
            "shell",
            "-c",
            "from vehicles.services import register_vehicle; "
            f"register_vehicle(vin={DRILL_VIN!r}, model_name='Aurora', model_year=2026)",
        )
        bridge_log = (tmp_path / "bridge.log").open("w")
        bridge = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "mqtt_bridge", "--no-shared"],
            env=env,
            cwd=ROOT,
            stdout=bridge_log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: "connected to" in (tmp_path / "bridge.log").read_text(), timeout=30)

        publisher, _ = connect_probe(mosquitto.port, client_id="outage-publisher")
        started = time.monotonic()
        stopped_at = restarted_at = None
        for seq in range(1, PUBLISHED + 1):
            document = telemetry(DRILL_VIN, seq=seq, timestamp=int(time.time()))
            publisher.publish(f"vehicle/{DRILL_VIN}/telemetry", encode(document), qos=1)
            elapsed = time.monotonic() - started
            if stopped_at is None and elapsed >= OUTAGE_AFTER_S:
                postgres.stop("fast")
                stopped_at = elapsed
            elif restarted_at is None and stopped_at and elapsed >= stopped_at + OUTAGE_SECONDS:
                postgres.start()
                restarted_at = elapsed
            time.sleep(max(0.0, seq / PUBLISH_RATE_PER_S - (time.monotonic() - started)))
        if restarted_at is None:
            postgres.start()
            restarted_at = time.monotonic() - started

        def settled() -> tuple[int, int] | None:
            stored = postgres.query(
                "SELECT count(*) FROM diagnostics_telemetrysample s "
                "JOIN vehicles_vehicle v ON v.id = s.vehicle_id WHERE v.vin = %s",
                (DRILL_VIN,),
            )[0][0]
            dropped = postgres.query("SELECT coalesce(sum(count), 0) FROM diagnostics_inbounddrop")
            counted = (stored, int(dropped[0][0]))
            return counted if sum(counted) >= PUBLISHED else None

        stored, dropped = wait_for(settled, timeout=90, interval=0.5)
        settled_at = time.monotonic() - started
    finally:
        if publisher is not None:
            publisher.disconnect()
            publisher.loop_stop()
        if bridge is not None:
            bridge.send_signal(signal.SIGTERM)
            try:
                bridge.wait(30)
            except subprocess.TimeoutExpired:
                bridge.kill()
                bridge.wait(10)
        if bridge_log is not None:
            bridge_log.close()
        postgres.kill()
        mosquitto.cleanup()
        log = (tmp_path / "bridge.log").read_text() if (tmp_path / "bridge.log").exists() else ""
        shutil.rmtree(tmp_path, ignore_errors=True)
    with capsys.disabled():
        print(
            f"\npublished={PUBLISHED} stored={stored} dropped={dropped} "
            f"postgres down {stopped_at:.1f}-{restarted_at:.1f} s, all settled at {settled_at:.1f} s, "
            f"bridge retries logged={log.count('held unacknowledged')}"
        )
    assert (stored, dropped) == (PUBLISHED, 0)
    assert "held unacknowledged" in log


@pytest.mark.django_db(transaction=True)
def test_a_bridge_that_stops_writes_the_drop_counts_it_held(broker):
    from diagnostics.services import count_drop

    sqlite_readers_do_not_lock()
    with mock.patch.object(
        InboundDrop.objects, "filter", side_effect=OperationalError("connection refused")
    ):
        count_drop(reason="bad_json", topic="vehicle/X/telemetry")
    assert drops.pending_drops() == {"bad_json": 1}
    with running_bridge(shared=False):
        pass
    assert drops.pending_drops() == {}
    assert drops.drop_counts() == {"bad_json": 1}
