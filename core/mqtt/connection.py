"""Where the broker is, with which credentials each of our roles connects, and our paho clients."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import select
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ROLES = ("bridge", "front")
CREDENTIALS_FILE = "mqtt-credentials.json"
# Instances of the bridge on one host claim the lowest free slot; more than this is a mistake.
MAX_BRIDGE_INSTANCES = 64


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


def embedded_credentials() -> dict[str, str]:
    """Each role's password for the embedded broker, generated into VAR_DIR once (mode 0600)."""
    path = Path(settings.VAR_DIR) / CREDENTIALS_FILE
    if not path.exists():
        passwords = {role: secrets.token_urlsafe(32) for role in ROLES}
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as draft:
            json.dump(passwords, draft)
        try:
            os.chmod(draft.name, 0o600)
            # link() never replaces: of two processes starting together, the first file wins.
            with contextlib.suppress(FileExistsError):
                os.link(draft.name, path)
        finally:
            os.unlink(draft.name)
    try:
        passwords = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"{path} cannot be read: {exc}") from exc
    if not isinstance(passwords, dict) or any(not passwords.get(role) for role in ROLES):
        raise ImproperlyConfigured(f"{path} must hold a password for each of {ROLES}")
    return passwords


def broker_address(role: str = "bridge") -> BrokerAddress:
    """settings.MQTT_URL, or the embedded broker on loopback when it is unset, with `role`'s login.

    `role` is "bridge" (the bridge and the publisher) or "front" (the vehicles' TLS front).
    """
    if role not in ROLES:
        raise ValueError(f"unknown MQTT role {role!r}; expected one of {ROLES}")
    url = settings.MQTT_URL
    if not url:
        return BrokerAddress(
            host="127.0.0.1",
            port=settings.MQTT_EMBEDDED_PORT,
            embedded=True,
            username=role,
            password=embedded_credentials()[role],
        )
    parts = urlsplit(url)
    if role == "bridge" and parts.username:
        username, password = unquote(parts.username), unquote(parts.password or "")
    elif role == "bridge":
        username, password = settings.MQTT_BRIDGE_USERNAME, settings.MQTT_BRIDGE_PASSWORD
    else:
        username, password = settings.MQTT_FRONT_USERNAME, settings.MQTT_FRONT_PASSWORD
    return BrokerAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 1883,
        embedded=False,
        username=username or None,
        password=password or None,
    )


def client_id(role: str) -> str:
    """A client id unique to this process, for clients that keep no session (the publisher)."""
    return f"ota-{role}-{socket.gethostname()[:20]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ClientIdInUse(RuntimeError):
    pass


@dataclass
class ClaimedClientId:
    """A bridge client id this process holds a lock on, so no other process on the host uses it."""

    value: str
    lock: IO[bytes]

    def release(self) -> None:
        self.lock.close()


def _lock_file(name: str) -> IO[bytes] | None:
    directory = Path(settings.MQTT_BRIDGE_LOCK_DIR)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = (directory / f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def claim_bridge_client_id(explicit: str = "") -> ClaimedClientId:
    """The bridge's client id: `explicit`, settings.MQTT_BRIDGE_CLIENT_ID, else hostname + slot.

    The id is stable across restarts (the broker resumes the session) and held under a file
    lock for the life of the bridge, so two processes on one host never take each other's
    session. Without an explicit id each process claims the lowest free slot.
    """
    explicit = explicit or settings.MQTT_BRIDGE_CLIENT_ID
    if explicit:
        lock = _lock_file(explicit)
        if lock is None:
            raise ClientIdInUse(f"MQTT client id {explicit!r} is held by another bridge process")
        return ClaimedClientId(explicit, lock)
    host = socket.gethostname()[:40]
    for slot in range(MAX_BRIDGE_INSTANCES):
        value = f"ota-bridge-{host}-{slot}"
        lock = _lock_file(value)
        if lock is not None:
            return ClaimedClientId(value, lock)
    raise ClientIdInUse(f"all {MAX_BRIDGE_INSTANCES} bridge client ids of {host} are in use")


class PollingClient(mqtt.Client):
    """paho's client waiting on poll() instead of select().

    select() cannot watch a file descriptor numbered 1024 or more, so in a server that holds
    a thousand vehicle connections paho's own loop never connects a late client. The rest of
    paho's loop (reconnects with backoff, the wake-up socket pair) is unchanged.
    """

    def _loop(self, timeout: float = 1.0) -> mqtt.MQTTErrorCode:
        sock = self._sock
        if sock is None:
            return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
        pending = sock.pending() if hasattr(sock, "pending") else 0
        wake = self._sockpairR
        poller = select.poll()
        try:
            poller.register(sock, select.POLLIN | (select.POLLOUT if self.want_write() else 0))
            if wake is not None:
                poller.register(wake, select.POLLIN)
            ready = dict(poller.poll(0 if pending else timeout * 1000))
        except (OSError, ValueError, TypeError):
            # The socket was closed under us: a lost connection, unless we are disconnecting.
            if self._state not in (
                mqtt._ConnectionState.MQTT_CS_DISCONNECTING,
                mqtt._ConnectionState.MQTT_CS_DISCONNECTED,
            ):
                self._state = mqtt._ConnectionState.MQTT_CS_CONNECTION_LOST
            return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
        events = ready.get(sock.fileno(), 0)
        writable = bool(events & select.POLLOUT)
        if pending or events & (select.POLLIN | select.POLLERR | select.POLLHUP):
            rc = self.loop_read()
            if rc or self._sock is None:
                return rc
        if wake is not None and wake.fileno() in ready:
            # A publish() from another thread woke us: write it now.
            writable = True
            with contextlib.suppress(BlockingIOError):
                wake.recv(10000)
        if writable:
            rc = self.loop_write()
            if rc or self._sock is None:
                return rc
        return self.loop_misc()


def new_client(
    address: BrokerAddress, *, client_id: str, persistent: bool, manual_ack: bool = False
) -> mqtt.Client:
    """A paho client for `address`; `persistent` keeps the broker-side session across reconnects."""
    if address.protocol == mqtt.MQTTv5:
        client = PollingClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
    else:
        client = PollingClient(
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
