"""A background service for the runota test that fails every time it starts."""

from __future__ import annotations

import threading


def start(stop_event: threading.Event) -> None:
    raise ConnectionError("the service's backend refuses every connection")
