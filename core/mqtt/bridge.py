"""The MQTT bridge: broker -> Channels channel "mqtt-inbound" -> worker -> services.

paho's network thread only buffers (topic, payload, mid). An asyncio loop forwards the buffer
in batches to the channel layer and only then acknowledges the messages (manual PUBACK), so a
QoS 1 message is either on the channel or still owed by the broker. With the in-memory
channel layer the worker runs in the same loop; with Redis, `manage.py runworker mqtt-inbound`
processes scale it out. The same loop times out silent commands and diagnostic requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from paho.mqtt.packettypes import PacketTypes

from core.mqtt import topics
from core.mqtt.connection import BrokerAddress, broker_address, new_client

logger = logging.getLogger(__name__)

INBOUND_CHANNEL = "mqtt-inbound"
MESSAGE_TYPE = "mqtt.batch"


@dataclass
class BridgeOptions:
    client_id: str = ""
    batch_size: int = 500
    # Longest a message waits in the bridge for its batch to fill up.
    flush_interval: float = 0.05
    run_worker: bool = True
    # Threads that touch the database (ingest and timeout sweep); None: one on SQLite, which
    # serialises writers anyway, two on PostgreSQL, where one batch's Python work overlaps
    # the other's database round trips.
    worker_tasks: int | None = None
    sweep_interval: float = 1.0
    session_expiry: int = 3600
    # MQTT 5 receive maximum: how many unacknowledged QoS 1 messages the broker may send us.
    receive_maximum: int = 4000
    shared: bool | None = None  # None: shared subscriptions whenever the broker speaks MQTT 5


@dataclass
class BridgeStats:
    received: int = 0
    forwarded: int = 0
    connects: int = 0
    batches: int = 0
    worker_seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)


def default_client_id() -> str:
    # Stable across restarts so the broker resumes the same persistent session.
    return getattr(settings, "MQTT_BRIDGE_CLIENT_ID", "") or f"ota-bridge-{socket.gethostname()}"


class MqttBridge:
    def __init__(
        self,
        options: BridgeOptions | None = None,
        address: BrokerAddress | None = None,
        channel_layer: Any = None,
    ):
        self.options = options or BridgeOptions()
        # An in-memory layer belongs to one event loop: two bridges in one process (tests)
        # each need their own.
        self._layer = channel_layer
        self.address = address or broker_address()
        self.stats = BridgeStats()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._buffer: list[tuple[str, bytes, int, int]] = []
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.shared = (
            self.options.shared
            if self.options.shared is not None
            else self.address.protocol == mqtt.MQTTv5
        )
        if self.shared and self.address.protocol != mqtt.MQTTv5:
            logger.warning("shared subscriptions need MQTT 5; this broker gets plain ones")
            self.shared = False
        self.worker_tasks = self.options.worker_tasks
        if self.worker_tasks is None:
            from django.db import connection

            self.worker_tasks = 1 if connection.vendor == "sqlite" else 2
        self.client = new_client(
            self.address,
            client_id=self.options.client_id or default_client_id(),
            persistent=True,
            manual_ack=True,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    # paho thread -------------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            logger.error("mqtt bridge connect refused: %s", reason)
            return
        self.stats.connects += 1
        filters = topics.subscription_filters(shared=self.shared)
        client.subscribe([(f, 1) for f in filters])
        logger.info(
            "mqtt bridge connected to %s:%s session_present=%s filters=%s",
            self.address.host,
            self.address.port,
            getattr(flags, "session_present", None),
            filters,
        )
        self.connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        logger.warning("mqtt bridge disconnected (%s); paho reconnects with backoff", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._buffer.append((message.topic, bytes(message.payload), message.mid, message.qos))
            self.stats.received += 1
            full = len(self._buffer) >= self.options.batch_size
        if full and self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    # asyncio loop ------------------------------------------------------------------------

    async def _forward(self, layer: Any) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.options.flush_interval)
            self._wake.clear()
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                continue
            message = {"type": MESSAGE_TYPE, "messages": [[t, p] for t, p, _, _ in batch]}
            while True:
                try:
                    await layer.send(INBOUND_CHANNEL, message)
                    break
                except ChannelFull:
                    # Back-pressure: the broker keeps the unacknowledged rest.
                    await asyncio.sleep(0.05)
            for _, _, mid, qos in batch:
                if qos > 0:
                    self.client.ack(mid, qos)
            self.stats.forwarded += len(batch)

    async def _work(self, layer: Any) -> None:
        from core.mqtt.ingest import handle_batch

        while True:
            message = await layer.receive(INBOUND_CHANNEL)
            messages = [(t, bytes(p)) for t, p in message["messages"]]
            started = time.perf_counter()
            try:
                outcomes = await self._loop.run_in_executor(
                    self._db_threads, handle_batch, messages
                )
            except Exception:
                # handle_batch accounts for every message itself; this is a last resort so
                # that no failure ends the worker.
                logger.exception("mqtt worker failed on a batch of %d", len(messages))
                outcomes = Counter({"dropped:error": len(messages)})
            self.stats.worker_seconds += time.perf_counter() - started
            self.stats.batches += 1
            self.stats.outcomes.update(outcomes)

    async def _sweep(self) -> None:
        from diagnostics.services import expire_overdue

        while True:
            await asyncio.sleep(self.options.sweep_interval)
            await self._loop.run_in_executor(self._db_threads, _sweep_once, expire_overdue)

    async def _main(self, stop: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._db_threads = ThreadPoolExecutor(
            max_workers=self.worker_tasks, thread_name_prefix="mqtt-worker"
        )
        self._wake = asyncio.Event()
        layer = self._layer or get_channel_layer()
        if layer is None:
            raise RuntimeError("the MQTT bridge needs a Channels layer (CHANNEL_LAYERS)")
        tasks = [asyncio.create_task(self._forward(layer)), asyncio.create_task(self._sweep())]
        if self.options.run_worker:
            tasks += [asyncio.create_task(self._work(layer)) for _ in range(self.worker_tasks)]
        try:
            while not stop.is_set():
                await asyncio.sleep(0.1)
                for task in tasks:
                    if task.done() and task.exception():
                        raise task.exception()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Each database thread closes its own connection before it ends.
            for _ in range(self.worker_tasks):
                self._db_threads.submit(_close_connections)
            self._db_threads.shutdown(wait=True)

    def _connect(self) -> None:
        props = None
        if self.address.protocol == mqtt.MQTTv5:
            props = mqtt.Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.options.session_expiry
            props.ReceiveMaximum = self.options.receive_maximum
            self.client.connect_async(
                self.address.host,
                self.address.port,
                keepalive=30,
                clean_start=False,
                properties=props,
            )
        else:
            self.client.connect_async(self.address.host, self.address.port, keepalive=30)

    def run(self, stop: threading.Event) -> None:
        """Bridge until `stop` is set; reconnects on its own after broker restarts."""
        self._connect()
        self.client.loop_start()
        try:
            asyncio.run(self._main(stop))
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            logger.info("mqtt bridge stopped: %s", self.stats)


def _close_connections() -> None:
    from django.db import connections

    connections.close_all()


def _sweep_once(expire: Any) -> None:
    try:
        expired = expire()
        if any(expired.values()):
            logger.info("timed out %s", expired)
    except Exception:
        # The sweep retries next round; it must never take the bridge down.
        logger.exception("timeout sweep failed")


def start(stop_event: threading.Event) -> None:
    """`manage.py runota` background service: the bridge with its worker in this process."""
    # Let the embedded broker bind its port first when both start together.
    time.sleep(0.5 if broker_address().embedded else 0)
    MqttBridge().run(stop_event)
