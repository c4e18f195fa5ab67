"""Loopback MQTT fixtures for end-to-end tests: the shared test broker, a private one.

A running bridge for such tests is telematics.testing.running_bridge.
"""

from __future__ import annotations

import getpass
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from core.mqtt.publisher import PahoPublisher, set_publisher

TEST_BROKER_URL = os.environ.get("MQTT_URL") or "mqtt://127.0.0.1:1883"


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 1883), timeout=2):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test at `timeout`."""
    from django.db import OperationalError

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OperationalError:
            # An in-memory SQLite test database locks whole tables while the worker writes.
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def sqlite_readers_do_not_lock() -> None:
    """Let this thread poll an in-memory SQLite test database without locking the worker out.

    The in-memory test database is one shared cache, where a reader holds table locks that
    make a concurrent writer fail at once instead of waiting.
    """
    from django.db import connection

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA read_uncommitted = 1")


def connect_probe(
    port: int,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    protocol: int = mqtt.MQTTv5,
) -> tuple[mqtt.Client, Any]:
    """A running paho client on 127.0.0.1:`port` and the broker's answer to its CONNECT."""
    answer = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = lambda c, u, flags, reason, props: answer.put(reason)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        reason = answer.get(timeout=10)
    except queue.Empty:
        client.loop_stop()
        raise AssertionError("no CONNACK within 10 s") from None
    return client, reason


def close_probe(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


@contextmanager
def real_publisher() -> Iterator[None]:
    """A real process-wide publisher for the broker the settings name (restores the previous one)."""
    publisher = PahoPublisher()
    previous = set_publisher(publisher)
    try:
        yield
    finally:
        set_publisher(previous)
        publisher.close()


class PrivateMosquitto:
    """A mosquitto of our own on an ephemeral loopback port, with persistence, to restart at will."""

    def __init__(self, *, password_file: Path | None = None, acl_file: Path | None = None) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ota-mosquitto-"))
        self.conf = self.dir / "mosquitto.conf"
        access = "allow_anonymous true\n"
        if password_file is not None:
            access = f"allow_anonymous false\npassword_file {password_file}\n"
        if acl_file is not None:
            access += f"acl_file {acl_file}\n"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{access}"
            # Started as root, mosquitto would switch to its own user and could not write
            # the persistence file into our temporary directory.
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "max_queued_messages 100000\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen(
            [binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: reachable(self.url), timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            # SIGTERM: mosquitto writes sessions and queued messages to disk before exiting.
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
