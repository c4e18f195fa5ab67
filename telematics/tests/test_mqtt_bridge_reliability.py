"""The bridge under faults: an idle Redis layer, restarts, hand-overs, a busy process."""

from __future__ import annotations

import asyncio
import os
import random
import resource
import threading
import uuid
from contextlib import ExitStack

import pytest
from django.conf import settings

from core import health
from core.mqtt.testing_broker import (
    PrivateMosquitto,
    real_publisher,
    sqlite_readers_do_not_lock,
    wait_for,
)
from diagnostics.models import TelemetrySample
from simulator.vehicle import SimulatedVehicle, VehicleConfig
from telematics import bridge as bridge_module
from telematics.testing import running_bridge

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Longer than redis-py's 5 s socket timeout, which redis 8 turns into an error on idle reads.
IDLE_SECONDS = 6.5


@pytest.fixture(autouse=True)
def _readers_do_not_lock_writers() -> None:
    sqlite_readers_do_not_lock()


@pytest.fixture
def vehicle(registry):
    from vehicles.services import register_vehicle

    vin = "TEST" + "".join(random.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(13))
    return register_vehicle(vin=vin, model_name="Aurora", model_year=2026)


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


def _vehicle_on(broker: PrivateMosquitto, vin: str) -> SimulatedVehicle:
    sim = SimulatedVehicle(VehicleConfig(vin=vin, port=broker.port)).start()
    assert sim.connected.wait(10)
    return sim


def _redis_layer():
    from channels_redis.core import RedisChannelLayer

    return RedisChannelLayer(hosts=[REDIS_URL], prefix=f"test-{uuid.uuid4().hex[:8]}")


def test_an_idle_receive_on_the_redis_layer_keeps_waiting():
    """What `runworker mqtt-inbound` does between messages must not end in an error."""

    async def idle_receive() -> BaseException:
        try:
            await asyncio.wait_for(_redis_layer().receive("mqtt-inbound"), IDLE_SECONDS)
        except BaseException as exc:  # noqa: BLE001 - the test reports what ended the wait
            return exc
        raise AssertionError("an empty channel returned a message")

    ended_by = asyncio.run(idle_receive())
    assert type(ended_by) is TimeoutError, repr(ended_by)


def test_bridge_with_a_redis_layer_still_stores_telemetry_after_idling(broker, vehicle):
    with running_bridge(channel_layer=_redis_layer(), shared=False) as bridge:
        threading.Event().wait(IDLE_SECONDS)
        sim = _vehicle_on(broker, vehicle.vin)
        try:
            sim.send_telemetry(speed_kph=7)
            wait_for(lambda: TelemetrySample.objects.filter(vehicle=vehicle).exists(), timeout=15)
        finally:
            sim.stop(graceful=False)
        assert bridge.stats.task_restarts == 0


def test_bridge_forwarding_to_redis_retries_until_the_layer_answers(broker, vehicle):
    """External workers: a batch stays unacknowledged until Redis took it, then is delivered."""
    layer = _redis_layer()
    with running_bridge(channel_layer=layer, shared=False, run_worker=False):
        threading.Event().wait(IDLE_SECONDS)
        sim = _vehicle_on(broker, vehicle.vin)
        try:
            sim.send_telemetry(speed_kph=8)
            topics = asyncio.run(_topics_forwarded_until(layer, f"vehicle/{vehicle.vin}/telemetry"))
        finally:
            sim.stop(graceful=False)
    assert f"vehicle/{vehicle.vin}/telemetry" in topics


async def _topics_forwarded_until(layer, wanted: str, seconds: float = 15) -> list[str]:
    """Topics of the batches the bridge forwards, until `wanted` is among them or time is up.

    The vehicle's presence message may travel in a batch of its own before its telemetry.
    """
    topics: list[str] = []
    deadline = asyncio.get_running_loop().time() + seconds
    while wanted not in topics:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        try:
            message = await asyncio.wait_for(layer.receive("mqtt-inbound"), left)
        except TimeoutError:
            break
        topics += [topic for topic, _ in message["messages"]]
    return topics


def test_bridge_acknowledges_a_message_only_after_it_is_stored(broker, vehicle):
    """While the database holds ingest up, the broker may not consider anything delivered."""
    from django.db import transaction

    from vehicles.models import Vehicle

    window = 5
    with running_bridge(shared=False, receive_maximum=window, batch_size=1) as bridge:
        sim = _vehicle_on(broker, vehicle.vin)
        try:
            with transaction.atomic():
                # Locks the vehicle row (and on SQLite the whole database) against ingest.
                list(Vehicle.objects.select_for_update().filter(pk=vehicle.pk))
                for _ in range(20):
                    sim.send_telemetry(speed_kph=5)
                threading.Event().wait(2)
                # Unacknowledged, the broker sends no more than the receive maximum.
                assert bridge.stats.received <= window + 1  # + the "online" status
                assert bridge.stats.forwarded == 0
            wait_for(
                lambda: TelemetrySample.objects.filter(vehicle=vehicle).count() == 20, timeout=30
            )
        finally:
            sim.stop(graceful=False)
        assert bridge.stats.forwarded == bridge.stats.received == 21


def test_two_bridges_on_one_host_with_default_ids_never_take_each_others_session(
    broker, vehicle, settings
):
    settings.MQTT_BRIDGE_CLIENT_ID = ""
    with (
        running_bridge(client_id="", shared=True) as first,
        running_bridge(client_id="", shared=True) as second,
    ):
        assert first.client_id != second.client_id
        # Longer than paho's first reconnect delay: a taken-over session would flap by now.
        threading.Event().wait(3)
        assert first.connected.is_set() and second.connected.is_set()
        assert (first.stats.connects, second.stats.connects) == (1, 1)
        sim = _vehicle_on(broker, vehicle.vin)
        try:
            for _ in range(40):
                sim.send_telemetry(speed_kph=6)
            wait_for(
                lambda: TelemetrySample.objects.filter(vehicle=vehicle).count() == 40, timeout=20
            )
        finally:
            sim.stop(graceful=False)


def test_a_bridge_that_stops_hands_its_share_to_the_others(broker, vehicle):
    with running_bridge(shared=True) as staying:
        with running_bridge(shared=True) as leaving:
            assert leaving.client_id != staying.client_id
        # The one that left must no longer be routed a share of the stream.
        sim = _vehicle_on(broker, vehicle.vin)
        try:
            for _ in range(20):
                sim.send_telemetry(speed_kph=4)
            wait_for(
                lambda: TelemetrySample.objects.filter(vehicle=vehicle).count() == 20, timeout=20
            )
        finally:
            sim.stop(graceful=False)
        assert staying.stats.received >= 20


def test_runota_bridge_loses_no_message_published_right_after_a_broker_restart(broker, vehicle):
    """The bridge as runota runs it: supervised `telematics.bridge.start`, default settings."""
    assert settings.MQTT_SHARED_SUBSCRIPTIONS is False
    stop = threading.Event()
    service = threading.Thread(
        target=health.supervise,
        args=(bridge_module.SERVICE_NAME, bridge_module.start, stop),
        kwargs={"max_restarts": 0, "on_give_up": lambda name: None},
        daemon=True,
    )
    service.start()
    sim = None
    try:
        connected = lambda: (  # noqa: E731
            health.background_services()
            .get(bridge_module.SERVICE_NAME, {})
            .get("details", {})
            .get("connected")
        )
        wait_for(connected, timeout=15)
        broker.stop()
        broker.start()
        # Published before the bridge has reconnected: only its restored session keeps them.
        sim = _vehicle_on(broker, vehicle.vin)
        for _ in range(5):
            sim.send_telemetry(speed_kph=9).wait_for_publish(5)
        wait_for(lambda: TelemetrySample.objects.filter(vehicle=vehicle).count() == 5, timeout=60)
    finally:
        if sim is not None:
            sim.stop(graceful=False)
        stop.set()
        service.join(30)
        health.forget(bridge_module.SERVICE_NAME)
    assert not service.is_alive()


def test_bridge_and_publisher_connect_when_the_process_holds_over_1024_descriptors(broker, vehicle):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if soft < wanted + 100:
        if hard != resource.RLIM_INFINITY and hard < wanted + 100:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} is below {wanted + 100}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted + 100, hard))
    # The vehicle's own paho client connects first: the vehicle is not what is under test.
    sim = _vehicle_on(broker, vehicle.vin)
    held = []
    try:
        # As a server holding a thousand vehicle connections does.
        for _ in range(wanted):
            held.append(os.open(os.devnull, os.O_RDONLY))
        assert max(held) >= 1024
        with ExitStack() as stack:
            bridge = stack.enter_context(running_bridge(shared=False))
            stack.enter_context(real_publisher())
            assert bridge.client.socket().fileno() >= 1024
            sim.send_telemetry(speed_kph=3)
            wait_for(lambda: TelemetrySample.objects.filter(vehicle=vehicle).exists(), timeout=15)
            from diagnostics.services import send_control_command

            send_control_command(vehicles=[vehicle], command="collect_vci")
            wait_for(lambda: "control" in sim.handled, timeout=15)
    finally:
        sim.stop(graceful=False)
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
