"""A background service for the runota test: proves runota starts RUNOTA_BACKGROUND_SERVICES."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def start(stop_event: threading.Event) -> None:
    Path(os.environ["OTA_TEST_MARKER"]).write_text("started")
    stop_event.wait()
