"""Loopback fixtures for end-to-end tests of the bridge."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from telematics.bridge import BridgeOptions, MqttBridge


@contextmanager
def running_bridge(*, channel_layer: Any = None, **options: Any) -> Iterator[MqttBridge]:
    """A bridge with its in-process worker (and its own in-memory channel layer), in a thread."""
    from channels.layers import InMemoryChannelLayer

    options.setdefault("client_id", f"ota-bridge-test-{uuid.uuid4().hex[:10]}")
    # Several bridges of one test split the stream, as scaled-out bridges do.
    options.setdefault("shared", True)
    options.setdefault("sweep_interval", 0.2)
    options.setdefault("session_expiry", 120)
    bridge = MqttBridge(
        BridgeOptions(**options), channel_layer=channel_layer or InMemoryChannelLayer()
    )
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()
    try:
        if not bridge.subscribed.wait(15):
            raise AssertionError("the bridge did not subscribe within 15 s")
        yield bridge
    finally:
        stop.set()
        thread.join(15)
