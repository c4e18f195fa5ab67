"""manage.py seed_fleet: a synthetic fleet in bulk, refused beside real vehicles unless forced."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from core.models import AuditEvent
from ecus.models import Ecu, RegistryEcu, RegistryZone
from ecus.versions import SemVer
from vehicles.models import Vehicle, ZonalGateway
from vehicles.seeding import SYNTHETIC_PREFIX, seed_fleet


def test_seeds_vehicles_with_the_registrys_gateways_and_ecus(registry) -> None:
    result = seed_fleet(vehicles=5, batch_size=2)
    slots, zones = RegistryEcu.objects.count(), RegistryZone.objects.count()
    assert (result.vehicles, result.ecus) == (5, 5 * slots)
    vins = list(Vehicle.objects.values_list("vin", flat=True))
    assert vins == [f"{SYNTHETIC_PREFIX}{n:012d}" for n in range(1, 6)]
    assert ZonalGateway.objects.count() == 5 * zones
    for ecu in Ecu.objects.select_related("zonal_gateway")[:300]:
        assert ecu.sw_version_key == SemVer.coerce(ecu.sw_version).sort_key
        assert ecu.zonal_gateway.vehicle_id == ecu.vehicle_id
    event = AuditEvent.objects.get(action="fleet.seeded")
    assert event.details["vehicles"] == 5


def test_a_second_run_continues_the_numbering(registry) -> None:
    seed_fleet(vehicles=2)
    seed_fleet(vehicles=2)
    assert Vehicle.objects.order_by("vin").last().vin == f"{SYNTHETIC_PREFIX}{4:012d}"


def test_refuses_a_database_with_real_vehicles_unless_forced(vehicle, capsys) -> None:
    with pytest.raises(CommandError, match="^--force: the database holds 1 vehicles") as refused:
        call_command("seed_fleet", vehicles=3)
    assert "\n" not in str(refused.value)
    assert Vehicle.objects.count() == 1
    call_command("seed_fleet", vehicles=3, force=True, verbosity=0)
    assert Vehicle.objects.count() == 4


@pytest.mark.parametrize(
    ("options", "flag"),
    [({"vehicles": 0}, "--vehicles"), ({"vehicles": 1, "batch_size": 0}, "--batch-size")],
)
def test_nonsense_counts_are_one_line_naming_the_option(registry, options, flag) -> None:
    with pytest.raises(CommandError, match=f"^{flag}: "):
        call_command("seed_fleet", **options)
    assert not Vehicle.objects.exists()


def test_an_empty_registry_is_refused(db) -> None:
    with pytest.raises(CommandError, match="import_registry"):
        call_command("seed_fleet", vehicles=1)
