"""The console's fleet list says when its total is a lower bound."""

from __future__ import annotations

import pytest

from console.tests.dashboard_helpers import logged_in
from vehicles import filters
from vehicles.services import register_vehicle

VINS = ["WVWZZZ1JZ3W386752", "1HGCM82633A004352", "5YJ3E1EA7KF317009", "JH4KA7561PC008269"]


@pytest.fixture
def four_vehicles(registry, monkeypatch):
    monkeypatch.setattr(filters, "ECU_COUNT_LIMIT", 2)
    return [register_vehicle(vin=vin, model_name="Aurora", model_year=2025) for vin in VINS]


@pytest.mark.django_db
def test_the_console_says_more_than_the_limit(viewer, four_vehicles) -> None:
    body = logged_in(viewer).get("/vehicles/?ecu=ECM").content.decode()
    assert "More than <strong>2</strong> vehicles" in body
    body = logged_in(viewer).get("/vehicles/?model_name=Aurora").content.decode()
    assert "<strong>4</strong> vehicles" in body
    assert "More than" not in body
