"""Campaign tick benchmark: what the worker's look for vehicles that joined a running campaign
costs each tick, for a campaign that names its vehicles by VIN.

Needs a database a fleet benchmark left behind (`bench/fleet.py` keeps its database): the
campaign "fleet N" names N VINs, every one with its update record. The reference is the query
the worker ran every tick before (every named VIN bound into it); ours is
`ota.engine.include_new_vehicles` as it runs now. Each runs --repeat times in a transaction
that is rolled back; CPU of this process per tick and the ratio.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ota_fleet10k \\
        python bench/campaign_tick.py --campaign "fleet 10000"
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
    parser.add_argument("--campaign", default="fleet 10000")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")
    import django

    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from ota.campaigns import eligible_vehicles
    from ota.engine import FAN_OUT_BATCH, include_new_vehicles
    from ota.models import Campaign, OtaUpdate

    campaign = Campaign.objects.get(name=args.campaign)
    records = OtaUpdate.objects.filter(campaign=campaign).count()
    print(
        f"campaign {campaign.name!r}: {len(campaign.target_vins):,} named VINs, {records:,} records"
    )

    def reference() -> int:
        known = OtaUpdate.objects.filter(campaign=campaign).values("vehicle_id")
        return len(
            eligible_vehicles(campaign)
            .exclude(pk__in=known)
            .values_list("pk", flat=True)[:FAN_OUT_BATCH]
        )

    def ours() -> int:
        return include_new_vehicles(campaign, now=timezone.now())

    cost = {}
    for name, tick in (("every VIN bound (reference)", reference), ("include_new_vehicles", ours)):
        with transaction.atomic():
            joined = tick()  # warm: imports, connection, statement caches
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.repeat):
                joined = tick()
            cost[name] = (
                (time.process_time() - cpu) / args.repeat * 1000,
                (time.perf_counter() - wall) / args.repeat * 1000,
            )
            transaction.set_rollback(True)
        print(f"{name:28} {cost[name][0]:8.2f} ms CPU, {cost[name][1]:8.2f} ms wall per tick; "
              f"{joined} would join")  # fmt: skip
    (ref_cpu, ref_wall), (our_cpu, our_wall) = cost.values()
    print(
        f"ratio (ours / reference): CPU {our_cpu / ref_cpu:.3f}x, wall {our_wall / ref_wall:.3f}x"
    )


if __name__ == "__main__":
    main()
