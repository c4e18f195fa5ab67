"""GET /api/v1/reports/versions: ECUs per version per model, in one call."""

from __future__ import annotations

import pytest

from ecus.models import Ecu
from vehicles.services import register_vehicle


@pytest.fixture
def fleet(registry):
    register_vehicle(vin="WVWZZZ1JZ3W386752", model_name="Aurora", model_year=2026)
    register_vehicle(vin="1HGCM82633A004352", model_name="Aurora", model_year=2025)
    register_vehicle(vin="5YJ3E1EA7KF317009", model_name="Borealis", model_year=2026)
    ecu = Ecu.objects.get(vehicle__vin="5YJ3E1EA7KF317009", ecu_id="ECU_001")
    ecu.sw_version = "2.0.0"
    ecu.save(update_fields=["sw_version"])


def test_counts_each_version_per_model_newest_first(viewer_client, fleet) -> None:
    ecms_per_vehicle = Ecu.objects.filter(
        vehicle__vin="WVWZZZ1JZ3W386752", ecu_type__code="ECM"
    ).count()
    defaults = {}
    for version in Ecu.objects.filter(
        vehicle__vin="WVWZZZ1JZ3W386752", ecu_type__code="ECM"
    ).values_list("sw_version", flat=True):
        defaults[version] = defaults.get(version, 0) + 1
    body = viewer_client.get("/api/v1/reports/versions?ecu=ECM").json()
    assert body["ecu"] == "ECM"
    assert body["total"] == 3 * ecms_per_vehicle
    assert body["models"] == ["Aurora", "Borealis"]
    assert body["versions"][0] == {"version": "2.0.0", "count": 1, "by_model": {"Borealis": 1}}
    rest = {row["version"]: row["by_model"] for row in body["versions"][1:]}
    for version, per_vehicle in defaults.items():
        assert rest[version]["Aurora"] == 2 * per_vehicle
    assert sum(row["count"] for row in body["versions"]) == body["total"]


def test_the_report_takes_the_fleet_list_filters(viewer_client, fleet) -> None:
    body = viewer_client.get("/api/v1/reports/versions?ecu=ECM&model_year=2025").json()
    assert body["models"] == ["Aurora"]
    assert "2.0.0" not in [row["version"] for row in body["versions"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "ecu"),
        ("ecu=NOPE", "ecu"),
        ("ecu=ECM&colour=red", "colour"),
        ("ecu=ECM&version=<x", "version"),
    ],
)
def test_bad_report_parameters_are_refused_by_name(viewer_client, fleet, query, field) -> None:
    response = viewer_client.get(f"/api/v1/reports/versions?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


def test_the_report_takes_a_fixed_number_of_queries(
    viewer_client, fleet, django_assert_max_num_queries
) -> None:
    with django_assert_max_num_queries(4):
        assert viewer_client.get("/api/v1/reports/versions?ecu=ECM").status_code == 200
