"""The embedded MQTT broker (amqtt) for a one-command run on a machine with no broker.

It listens on loopback only and admits two principals, each with a password generated into
the var dir: "front" (the PQC-TLS MQTT front, one connection per vehicle whose client id is
the VIN) and "bridge" (the bridge and the publisher). Each may use only the topics its job
needs, the same rights as config/mosquitto/acl gives them on an external broker. amqtt speaks
MQTT 3.1.1, so the bridge uses plain subscriptions here.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.plugins.topic_checking import TopicAccessControlListPlugin
from amqtt.session import Session
from django.conf import settings

from core.mqtt import topics
from core.mqtt.connection import embedded_credentials

logger = logging.getLogger(__name__)


class PasswordAuthPlugin(BaseAuthPlugin):
    """Admits a principal whose password matches; anonymous and unknown clients are refused."""

    @dataclass
    class Config:
        passwords: dict[str, str] = field(default_factory=dict)

    async def authenticate(self, *, session: Session) -> bool:
        # The passwords are 256-bit random tokens, so a constant-time comparison is enough:
        # no slow hash to stall the broker's loop when a whole fleet reconnects.
        expected = self.config.passwords.get(session.username or "")
        if expected is None or session.password is None:
            logger.warning("embedded broker refused client %r (no valid login)", session.client_id)
            return False
        return hmac.compare_digest(expected.encode(), str(session.password).encode())


def role_filters(root: str) -> dict[str, dict[Action, list[str]]]:
    """What each principal may publish and subscribe to; %c stands for the client id (the VIN)."""
    inbound = [f"{root}/{{vin}}/{kind}" for kind in topics.INBOUND_KINDS]
    outbound = [f"{root}/{{vin}}/{kind}" for kind in topics.OUTBOUND_KINDS]
    return {
        "front": {
            Action.PUBLISH: [t.format(vin="%c") for t in inbound],
            Action.SUBSCRIBE: [t.format(vin="%c") for t in outbound],
            Action.RECEIVE: [t.format(vin="%c") for t in outbound],
        },
        "bridge": {
            Action.PUBLISH: [t.format(vin="+") for t in outbound],
            Action.SUBSCRIBE: [t.format(vin="+") for t in inbound],
            Action.RECEIVE: [t.format(vin="+") for t in inbound],
        },
    }


class RoleTopicPlugin(BaseTopicPlugin):
    """Per-principal topic rights; the front's connections are confined to their own VIN."""

    @dataclass
    class Config:
        root: str = topics.DEFAULT_ROOT

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Any = None
    ) -> bool:
        if session is None or not topic:
            return False
        rules = role_filters(self.config.root).get(session.username or "", {})
        client = session.client_id or ""
        allowed = any(
            TopicAccessControlListPlugin.topic_ac(topic, rule.replace("%c", client))
            for rule in rules.get(action, [])
        )
        if not allowed:
            logger.warning(
                "embedded broker refused %s %s for %s/%s", action, topic, session.username, client
            )
        return allowed


def broker_config(port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {
            f"{__name__}.PasswordAuthPlugin": {"passwords": embedded_credentials()},
            f"{__name__}.RoleTopicPlugin": {"root": topics.topic_root()},
        },
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
        logger.info("MQTT_URL is set: the embedded broker stays off")
        return
    asyncio.run(serve(settings.MQTT_EMBEDDED_PORT, stop_event))
