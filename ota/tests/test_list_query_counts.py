"""Every list endpoint takes a fixed number of queries, whatever the number of rows."""

from __future__ import annotations

import pytest

from ota.tests.conftest import launch_campaign
from vehicles.services import register_vehicle


@pytest.fixture
def busy_fleet(registry, fleet_operator, ecm_release):
    for n in range(5):
        register_vehicle(vin=f"1HGCM8263{n:08d}", model_name="Aurora", model_year=2026)
    return launch_campaign(fleet_operator, [ecm_release])


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/vehicles",
        "/api/v1/campaigns/{campaign}/vehicles",
        "/api/v1/audit-events",
        "/api/v1/audit-events/export?format=csv",
        "/api/v1/vehicles/1HGCM826300000000/updates",
        "/api/v1/vehicles/1HGCM826300000000/software-history",
    ],
)
def test_list_endpoints_take_constant_queries(
    viewer_client, busy_fleet, django_assert_max_num_queries, url
) -> None:
    with django_assert_max_num_queries(5):
        response = viewer_client.get(url.format(campaign=busy_fleet.pk))
    assert response.status_code == 200
