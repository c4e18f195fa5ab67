"""The embedded MQTT broker (amqtt) for a one-command run on a machine with no broker.

It listens on loopback only: vehicles reach it through the PQC-TLS MQTT front, and the bridge
connects to it directly. amqtt speaks MQTT 3.1.1, so the bridge uses plain subscriptions here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)


def broker_config(port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
    }


async def serve(port: int, stop: threading.Event, ready: threading.Event | None = None) -> None:
    """Run an amqtt broker on 127.0.0.1:`port` until `stop` is set."""
    from amqtt.broker import Broker

    broker = Broker(broker_config(port))
    await broker.start()
    logger.info("embedded MQTT broker listening on 127.0.0.1:%s", port)
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            await asyncio.sleep(0.1)
    finally:
        await broker.shutdown()
        logger.info("embedded MQTT broker stopped")


def start(stop_event: threading.Event) -> None:
    """`manage.py runota` background service; does nothing when settings.MQTT_URL names a broker."""
    if settings.MQTT_URL:
        logger.info("MQTT_URL is set (%s): the embedded broker stays off", settings.MQTT_URL)
        return
    asyncio.run(serve(settings.MQTT_EMBEDDED_PORT, stop_event))
