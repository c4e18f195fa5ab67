"""Offers are paced to the updates the server is already carrying (ota.engine.MAX_IN_FLIGHT)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ota import engine
from ota.choices import UpdateState
from ota.models import OtaUpdate
from ota.tests.conftest import launch_campaign
from vehicles.services import register_vehicle

pytestmark = pytest.mark.django_db

VINS = [f"WPACE{index:012d}" for index in range(5)]


@pytest.fixture
def five_vehicles(registry) -> None:
    for vin in VINS:
        register_vehicle(vin=vin, model_name="Aurora", model_year=2026)


def _offered() -> int:
    return OtaUpdate.objects.filter(state=UpdateState.OFFERED).count()


def test_a_tick_offers_only_what_the_in_flight_budget_leaves(
    five_vehicles, fleet_operator, ecm_release, fake_packages, monkeypatch
) -> None:
    monkeypatch.setattr(engine, "MAX_IN_FLIGHT", 3)

    launch_campaign(fleet_operator, [ecm_release])  # its tick fans out and offers
    assert _offered() == 3
    engine.run_tick()
    assert _offered() == 3  # nothing freed: nothing more offered

    first = OtaUpdate.objects.filter(state=UpdateState.OFFERED).order_by("pk").first()
    OtaUpdate.objects.filter(pk=first.pk).update(state=UpdateState.AWAITING_REBOOT)
    engine.run_tick()
    assert _offered() == 3  # a vehicle rebooting no longer loads the server: one more offer
    assert OtaUpdate.objects.filter(state=UpdateState.QUEUED).count() == 1


def test_updates_without_progress_stop_holding_the_pace_back(
    five_vehicles, fleet_operator, ecm_release, fake_packages, monkeypatch
) -> None:
    monkeypatch.setattr(engine, "MAX_IN_FLIGHT", 2)
    launch_campaign(fleet_operator, [ecm_release])
    assert _offered() == 2

    silent_since = timezone.now() - engine.IN_FLIGHT_STALE - timedelta(seconds=1)
    OtaUpdate.objects.filter(state=UpdateState.OFFERED).update(updated_at=silent_since)
    engine.run_tick()
    assert _offered() == 4
    assert engine.offer_budget(timezone.now()) == 0
