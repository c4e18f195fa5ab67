"""A background service for the runota test whose work never returns, as a database call does
when the database stops answering: it holds a thread pool's thread, which Python joins at exit."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_pool = ThreadPoolExecutor(max_workers=1)


def start(stop_event: threading.Event) -> None:
    from twisted.internet import reactor

    # Bounded (an hour) so that nothing outlives a broken run for long.
    _pool.submit(time.sleep, 3600)
    # The marker says the reactor runs its loop, so its signal handlers are in place.
    serving = threading.Event()
    reactor.callFromThread(serving.set)  # type: ignore[attr-defined]
    if serving.wait(60):
        Path(os.environ["OTA_TEST_MARKER"]).write_text("serving")
    stop_event.wait()
