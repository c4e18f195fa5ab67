from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ota import worker
from ota.engine import run_tick


class Command(BaseCommand):
    help = "Run the campaign worker: fan out, offer, time out and judge waves (Ctrl-C stops)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run one tick and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            summary = run_tick()
            self.stdout.write(str(summary))
            return
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"campaign worker running, tick {worker.tick_seconds():.1f} s")
        worker.start(stop)
