"""The fleet list's total: exact for filters on the vehicle itself; counted up to a limit, and
said to be so, for filters on its ECUs (their exact total reads a hundred ECU rows a vehicle)."""

from __future__ import annotations

import pytest

from vehicles import filters
from vehicles.services import register_vehicle

VINS = ["WVWZZZ1JZ3W386752", "1HGCM82633A004352", "5YJ3E1EA7KF317009", "JH4KA7561PC008269"]


@pytest.fixture
def four_vehicles(registry, monkeypatch):
    monkeypatch.setattr(filters, "ECU_COUNT_LIMIT", 2)
    return [register_vehicle(vin=vin, model_name="Aurora", model_year=2025) for vin in VINS]


def _page(client, query: str) -> dict:
    response = client.get(f"/api/v1/vehicles?{query}")
    assert response.status_code == 200, response.content[:300]
    return response.json()


@pytest.mark.django_db
def test_a_filter_on_ecus_counts_up_to_the_limit_and_says_so(viewer_client, four_vehicles) -> None:
    body = _page(viewer_client, "ecu=ECM&limit=1")
    assert body["count"] == 2
    assert body["count_exact"] is False
    # The pages themselves are whole: every matching vehicle, once.
    seen = [row["vin"] for row in body["results"]]
    for _ in range(len(VINS)):
        if not body["next"]:
            break
        body = viewer_client.get(body["next"]).json()
        seen += [row["vin"] for row in body["results"]]
    assert sorted(seen) == sorted(VINS)


@pytest.mark.django_db
def test_a_total_within_the_limit_is_exact(viewer_client, four_vehicles) -> None:
    body = _page(viewer_client, f"ecu=ECM&search={VINS[0]}")
    assert (body["count"], body["count_exact"]) == (1, True)
    body = _page(viewer_client, "ecu=ECM&version=<0.0.1")
    assert (body["count"], body["count_exact"]) == (0, True)


@pytest.mark.django_db
def test_filters_on_the_vehicle_count_exactly(viewer_client, four_vehicles) -> None:
    body = _page(viewer_client, "limit=1")
    assert (body["count"], body["count_exact"]) == (4, True)
    body = _page(viewer_client, "model_name=Aurora&limit=1")
    assert (body["count"], body["count_exact"]) == (4, True)


@pytest.mark.django_db
def test_a_saved_filter_on_ecus_counts_up_to_the_limit(
    viewer_client, fleet_operator, four_vehicles
) -> None:
    from vehicles.services import create_saved_filter

    saved = create_saved_filter(name="ECM", query={"ecu": "ECM"}, actor=fleet_operator)
    response = viewer_client.get(f"/api/v1/saved-filters/{saved.pk}/vehicles?limit=1")
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert (body["count"], body["count_exact"]) == (2, False)
