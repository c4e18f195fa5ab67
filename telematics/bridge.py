"""The MQTT bridge: broker -> ingest services, in this process or through a Channels channel.

paho's network thread only buffers (topic, payload, mid). An asyncio loop takes the buffer in
batches and hands each batch either to `handle_batch` in this process (the default) or, with
`run_worker=False`, to the Channels channel "mqtt-inbound" for `manage.py runworker
mqtt-inbound` processes on a shared (Redis) layer. Only then does it acknowledge the messages
(manual PUBACK): a QoS 1 message the broker no longer owes us has been stored, counted as
dropped with a reason, or put on the shared channel. The same loop times out silent commands
and diagnostic requests. A task of the loop that fails is logged and restarted with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from paho.mqtt.packettypes import PacketTypes

from core import health, metrics
from core.mqtt import topics
from core.mqtt.connection import BrokerAddress, broker_address, claim_bridge_client_id, new_client
from diagnostics.services import expire_overdue
from diagnostics.services.drops import flush_pending_drops, pending_drops
from telematics.ingest import DatabaseUnavailable, handle_batch

logger = logging.getLogger(__name__)

INBOUND_CHANNEL = "mqtt-inbound"
MESSAGE_TYPE = "mqtt.batch"
SERVICE_NAME = "telematics.bridge.start"
# Backoff of a restarted task and of a retried channel send.
RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0

Message = tuple[str, bytes, int, int]  # topic, payload, mid, qos


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
    # None: settings.MQTT_BRIDGE_SESSION_EXPIRY.
    session_expiry: int | None = None
    # MQTT 5 receive maximum: how many unacknowledged QoS 1 messages the broker may send us.
    receive_maximum: int = 4000
    # None: settings.MQTT_SHARED_SUBSCRIPTIONS (shared subscriptions need MQTT 5).
    shared: bool | None = None
    # On a graceful stop, how long the bridge may take to finish what it has received.
    drain_seconds: float = 15.0


@dataclass
class BridgeStats:
    received: int = 0
    forwarded: int = 0
    connects: int = 0
    batches: int = 0
    task_restarts: int = 0
    worker_seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)


def backoff(attempt: int) -> float:
    return min(RETRY_MIN_SECONDS * 2 ** max(attempt - 1, 0), RETRY_MAX_SECONDS)


class MqttBridge:
    def __init__(
        self,
        options: BridgeOptions | None = None,
        address: BrokerAddress | None = None,
        channel_layer: Any = None,
        service_name: str | None = None,
    ):
        self.options = options or BridgeOptions()
        # An in-memory layer belongs to one event loop: two bridges in one process (tests)
        # each need their own.
        self._layer = channel_layer
        self.address = address or broker_address("bridge")
        self.service_name = service_name
        self.stats = BridgeStats()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._unsubscribed = threading.Event()
        self._buffer: list[Message] = []
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        # Workers that hold messages the database could not take; the bridge is unready
        # while any does.
        self._outages = 0
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.shared = (
            self.options.shared
            if self.options.shared is not None
            else settings.MQTT_SHARED_SUBSCRIPTIONS
        )
        if self.shared and self.address.protocol != mqtt.MQTTv5:
            logger.warning("shared subscriptions need MQTT 5; this broker gets plain ones")
            self.shared = False
        self.session_expiry = (
            self.options.session_expiry
            if self.options.session_expiry is not None
            else settings.MQTT_BRIDGE_SESSION_EXPIRY
        )
        self.worker_tasks = self.options.worker_tasks
        if self.worker_tasks is None:
            from django.db import connection

            self.worker_tasks = 1 if connection.vendor == "sqlite" else 2
        self._client_id = claim_bridge_client_id(self.options.client_id)
        self.client_id = self._client_id.value
        self.client = new_client(
            self.address, client_id=self.client_id, persistent=True, manual_ack=True
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_unsubscribe = lambda *args: self._unsubscribed.set()

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
            "mqtt bridge %s connected to %s:%s session_present=%s filters=%s",
            self.client_id,
            self.address.host,
            self.address.port,
            getattr(flags, "session_present", None),
            filters,
        )
        self.connected.set()
        self._report(connected=True)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self._report(connected=False)
        if reason.is_failure:
            logger.warning("mqtt bridge disconnected (%s); paho reconnects with backoff", reason)
        else:
            logger.info("mqtt bridge disconnected")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        metrics.MQTT_IN.inc()
        with self._lock:
            self._buffer.append((message.topic, bytes(message.payload), message.mid, message.qos))
            self.stats.received += 1
            full = len(self._buffer) >= self.options.batch_size
        if full and self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _report(self, **details: Any) -> None:
        if self.service_name:
            health.set_details(self.service_name, **details)

    # asyncio loop ------------------------------------------------------------------------

    def _take_batch(self) -> list[Message]:
        with self._lock:
            batch, self._buffer = self._buffer, []
        return batch

    def _ack(self, batch: list[Message]) -> None:
        for _, _, mid, qos in batch:
            if qos > 0:
                self.client.ack(mid, qos)
        self.stats.forwarded += len(batch)

    async def _forward(self, layer: Any, batches: asyncio.Queue[list[Message]]) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.options.flush_interval)
            self._wake.clear()
            batch = self._take_batch()
            if not batch:
                continue
            if self.options.run_worker:
                # The queue is as long as there are workers: a slow database slows the
                # bridge, and the broker keeps what we have not acknowledged.
                await batches.put(batch)
            else:
                await self._send(layer, batch)
                self._ack(batch)

    async def _send(self, layer: Any, batch: list[Message]) -> None:
        message = {"type": MESSAGE_TYPE, "messages": [[t, p] for t, p, _, _ in batch]}
        attempt = 0
        while True:
            try:
                await layer.send(INBOUND_CHANNEL, message)
                return
            except ChannelFull:
                # Back-pressure: the broker keeps the unacknowledged rest.
                await asyncio.sleep(0.05)
            except Exception as exc:
                # A Redis restart or timeout: keep the batch and try again.
                attempt += 1
                logger.warning("channel layer send failed (%r); retry %d", exc, attempt)
                await asyncio.sleep(backoff(attempt))

    async def _work(self, batches: asyncio.Queue[list[Message]]) -> None:
        while True:
            batch = await batches.get()
            started = time.perf_counter()
            try:
                outcomes = await self._ingest(batch)
            finally:
                batches.task_done()
            self.stats.worker_seconds += time.perf_counter() - started
            self.stats.batches += 1
            self.stats.outcomes.update(outcomes)

    async def _ingest(self, batch: list[Message]) -> Counter[str]:
        """Store or drop every message of `batch`, acknowledging each once it is settled.

        While the database cannot be reached the unsettled messages stay here unacknowledged
        and are tried again with backoff; the broker sends no more than the receive maximum
        meanwhile. A bridge told to stop leaves them unacknowledged: the broker sends them
        again to the next session.
        """
        outcomes: Counter[str] = Counter()
        pending = batch
        attempt = 0
        while True:
            try:
                outcomes.update(
                    await self._loop.run_in_executor(
                        self._db_threads, handle_batch, [(t, p) for t, p, _, _ in pending]
                    )
                )
                break
            except DatabaseUnavailable as exc:
                outcomes.update(exc.outcomes)
                waiting = set(exc.pending)
                self._ack([m for i, m in enumerate(pending) if i not in waiting])
                pending = [pending[i] for i in exc.pending]
            except Exception:
                # handle_batch accounts for every message itself; this is a last resort so
                # that no failure ends the worker, and every message is still counted.
                logger.exception("mqtt worker failed on a batch of %d", len(pending))
                outcomes["dropped:error"] += len(pending)
                break
            attempt += 1
            self._outage_started(attempt)
            delay = backoff(attempt)
            logger.warning(
                "database unavailable: %d mqtt messages held unacknowledged; retry %d in %.1f s",
                len(pending),
                attempt,
                delay,
            )
            if await self._stopped_within(delay):
                logger.warning(
                    "mqtt bridge stopping with %d messages unacknowledged for redelivery",
                    len(pending),
                )
                return outcomes
        # Acknowledged only now: each message is stored or counted as dropped.
        self._ack(pending)
        if attempt:
            self._outage_ended(attempt)
        return outcomes

    def _outage_started(self, attempt: int) -> None:
        with self._lock:
            self._outages += attempt == 1
        self._report(database=False)

    def _outage_ended(self, attempts: int) -> None:
        with self._lock:
            self._outages -= 1
            over = self._outages == 0
        if over:
            self._report(database=True)
        logger.info("database answers again; mqtt ingest resumed after %d retries", attempts)

    async def _stopped_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, seconds))
        return self._stop.is_set()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.options.sweep_interval)
            await self._loop.run_in_executor(self._db_threads, _sweep_once, expire_overdue)

    async def _supervise(
        self, name: str, run: Callable[[], Awaitable[None]], stop: threading.Event
    ) -> None:
        """Run one of the loop's tasks, restarting it with backoff if it fails."""
        attempt = 0
        while not stop.is_set():
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                attempt += 1
                self.stats.task_restarts += 1
                logger.exception("mqtt bridge task %s failed; restart %d", name, attempt)
                self._report(task_restarts=self.stats.task_restarts)
                await asyncio.sleep(backoff(attempt))

    async def _main(self, stop: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = stop
        # A bridge restarted by its supervisor holds nothing from its predecessor's outage.
        self._report(database=True)
        self._db_threads = ThreadPoolExecutor(
            max_workers=self.worker_tasks, thread_name_prefix="mqtt-worker"
        )
        self._wake = asyncio.Event()
        layer = None
        if not self.options.run_worker:
            layer = self._layer or get_channel_layer()
            if layer is None:
                raise RuntimeError("external MQTT workers need a Channels layer (REDIS_URL)")
        batches: asyncio.Queue[list[Message]] = asyncio.Queue(maxsize=self.worker_tasks)
        jobs: dict[str, Callable[[], Awaitable[None]]] = {
            "forward": lambda: self._forward(layer, batches),
            "sweep": self._sweep,
        }
        if self.options.run_worker:
            for number in range(self.worker_tasks):
                jobs[f"worker-{number}"] = lambda: self._work(batches)
        tasks = [asyncio.create_task(self._supervise(n, j, stop)) for n, j in jobs.items()]
        try:
            while not stop.is_set():
                await asyncio.sleep(0.1)
            await self._drain(layer, batches)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._db_threads.submit(_flush_drops)
            # Each database thread closes its own connection before it ends: the barrier
            # makes every thread take one of these jobs.
            every_thread = threading.Barrier(self.worker_tasks)
            for _ in range(self.worker_tasks):
                self._db_threads.submit(_close_connections, every_thread)
            self._db_threads.shutdown(wait=True)

    async def _drain(self, layer: Any, batches: asyncio.Queue[list[Message]]) -> None:
        """Hand over on a graceful stop: take no new messages, finish the ones we have."""
        if self.shared and self.connected.is_set():
            # Leave the share group first, so the broker routes its messages to the others.
            self._unsubscribed.clear()
            self.client.unsubscribe(topics.subscription_filters(shared=True))
            await asyncio.get_running_loop().run_in_executor(None, self._unsubscribed.wait, 5)
        else:
            # A plain subscription stays in our session: whatever arrives from now on is
            # left unacknowledged, and the broker delivers it again when we come back.
            self.client.on_message = None
        deadline = time.monotonic() + self.options.drain_seconds
        self._wake.set()
        while time.monotonic() < deadline:
            await asyncio.sleep(self.options.flush_interval * 2)
            with self._lock:
                empty = not self._buffer
            if empty and (not self.options.run_worker or batches.empty()):
                break
        if self.options.run_worker:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batches.join(), max(deadline - time.monotonic(), 0.1))

    def _connect(self) -> None:
        if self.address.protocol == mqtt.MQTTv5:
            props = mqtt.Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry
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

    def _disconnect(self) -> None:
        if self.shared and self.address.protocol == mqtt.MQTTv5:
            # Nothing of a share-group member may outlive it: end the session now.
            props = mqtt.Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            self.client.disconnect(properties=props)
        else:
            self.client.disconnect()

    def run(self, stop: threading.Event) -> None:
        """Bridge until `stop` is set; reconnects on its own after broker restarts."""
        self._connect()
        self.client.loop_start()
        try:
            asyncio.run(self._main(stop))
        finally:
            self._disconnect()
            self.client.loop_stop()
            self._client_id.release()
            self._report(connected=False)
            logger.info("mqtt bridge %s stopped: %s", self.client_id, self.stats)


def _close_connections(every_thread: threading.Barrier) -> None:
    from django.db import connections

    with contextlib.suppress(threading.BrokenBarrierError):
        every_thread.wait(timeout=10)
    connections.close_all()


def _flush_drops() -> None:
    try:
        flush_pending_drops()
    except Exception:
        logger.exception("drop counts not written on stop")
    if held := pending_drops():
        logger.error("mqtt bridge stops with drop counts the database never took: %s", held)


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
    time.sleep(0.5 if broker_address("bridge").embedded else 0)
    MqttBridge(service_name=SERVICE_NAME).run(stop_event)
