"""Where the broker is and how our own clients connect to it."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from django.conf import settings


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    embedded: bool
    username: str | None = None
    password: str | None = None

    @property
    def protocol(self) -> int:
        # The embedded amqtt broker speaks MQTT 3.1.1 only; every real broker we target speaks 5.
        return mqtt.MQTTv311 if self.embedded else mqtt.MQTTv5


def broker_address(role: str = "bridge") -> BrokerAddress:
    """settings.MQTT_URL, or the embedded broker on loopback when it is unset.

    `role` is "bridge" (the bridge and the publisher) or "front" (the vehicles' TLS front):
    each connects with its own broker credentials.
    """
    url = settings.MQTT_URL
    if not url:
        return BrokerAddress(host="127.0.0.1", port=settings.MQTT_EMBEDDED_PORT, embedded=True)
    parts = urlsplit(url)
    return BrokerAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 1883,
        embedded=False,
        username=parts.username,
        password=parts.password,
    )


def client_id(role: str) -> str:
    """A client id unique to this process, so two processes never steal each other's session."""
    return f"ota-{role}-{socket.gethostname()[:20]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def new_client(
    address: BrokerAddress, *, client_id: str, persistent: bool, manual_ack: bool = False
) -> mqtt.Client:
    """A paho client for `address`; `persistent` keeps the broker-side session across reconnects."""
    if address.protocol == mqtt.MQTTv5:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
    else:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
            manual_ack=manual_ack,
        )
    if address.username:
        client.username_pw_set(address.username, address.password)
    # Reconnect with exponential backoff from 1 s up to 30 s.
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client
