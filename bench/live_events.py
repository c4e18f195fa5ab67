"""Live-event benchmark: what a dashboard event costs the thread that publishes it.

Status reports, VCIs and telemetry publish live events from request and worker threads, which
run no event loop. The reference sends each event as `async_to_sync(layer.group_send)` would on
such a thread (a new event loop per event, so the Redis layer opens a connection for it);
`core.events` sends through one loop of the process's own. Both send --events events to a group
on the Redis channel layer, in the same run; CPU of this process per event and the ratio.

    python bench/live_events.py --redis-url redis://127.0.0.1:6379/7 --events 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args(argv)
    os.environ["REDIS_URL"] = args.redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from core.events import FLEET_GROUP, _send

    layer = get_channel_layer()
    message = {"type": "ota.event", "event": {"kind": "bench"}}

    def reference(n: int) -> None:
        async_to_sync(layer.group_send)(FLEET_GROUP, {**message, "n": n})

    def ours(n: int) -> None:
        _send(FLEET_GROUP, {"kind": "bench", "n": n})

    results = {}
    for name, send in (("a loop per event (reference)", reference), ("core.events", ours)):
        send(-1)  # connection and imports outside the timing
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(args.events):
            send(n)
        results[name] = (
            (time.process_time() - cpu) / args.events * 1000,
            (time.perf_counter() - wall) / args.events * 1000,
        )
        print(f"{name:30} {results[name][0]:.3f} ms CPU, {results[name][1]:.3f} ms wall per event")
    (ref_cpu, ref_wall), (our_cpu, our_wall) = results.values()
    print(
        f"ratio (core.events / reference): CPU {our_cpu / ref_cpu:.2f}x, wall {our_wall / ref_wall:.2f}x"
    )


if __name__ == "__main__":
    main()
