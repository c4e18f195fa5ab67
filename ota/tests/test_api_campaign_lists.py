"""Campaign lists page by key with the total, filter, sort, and refuse unknown parameters."""

from __future__ import annotations

import pytest

from ota.campaigns import create_campaign
from ota.choices import CampaignStatus
from ota.models import Campaign
from ota.tests.conftest import launch_campaign
from vehicles.services import register_vehicle

URL = "/api/v1/campaigns"


@pytest.fixture
def campaigns(fleet_operator, ecm_release) -> list[Campaign]:
    made = [
        create_campaign(operator=fleet_operator, name=f"rollout {n}", firmware_ids=[ecm_release.pk])
        for n in range(5)
    ]
    Campaign.objects.filter(pk=made[1].pk).update(status=CampaignStatus.PAUSED)
    return made


def test_campaigns_page_newest_first_with_the_total(viewer_client, campaigns) -> None:
    names, url = [], f"{URL}?limit=2"
    while url:
        body = viewer_client.get(url).json()
        assert body["count"] == 5
        names += [row["name"] for row in body["results"]]
        url = body["next"]
    assert names == [f"rollout {n}" for n in reversed(range(5))]


def test_campaigns_filter_by_status_and_sort_by_name(viewer_client, campaigns) -> None:
    body = viewer_client.get(f"{URL}?status=paused").json()
    assert [row["name"] for row in body["results"]] == ["rollout 1"]
    body = viewer_client.get(f"{URL}?status=draft&ordering=name&search=rollout").json()
    assert [row["name"] for row in body["results"]] == [
        "rollout 0",
        "rollout 2",
        "rollout 3",
        "rollout 4",
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("stat=draft", "stat"),
        ("status=flying", "status"),
        ("ordering=pause_reason", "ordering"),
        ("ecu=NOPE", "ecu"),
        ("offset=5", "offset"),
    ],
)
def test_campaign_list_refuses_unknown_or_malformed_parameters(
    viewer_client, campaigns, query, field
) -> None:
    response = viewer_client.get(f"{URL}?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


def test_a_campaigns_vehicles_page_by_key_and_filter(
    viewer_client, fleet_operator, ecm_release, registry
) -> None:
    for n in range(5):
        register_vehicle(vin=f"1HGCM8263{n:08d}", model_name="Aurora", model_year=2026)
    campaign = launch_campaign(fleet_operator, [ecm_release])
    seen, url = [], f"{URL}/{campaign.pk}/vehicles?limit=2&state=offered"
    while url:
        body = viewer_client.get(url).json()
        assert body["count"] == 5
        seen += [row["vin"] for row in body["results"]]
        url = body["next"]
    assert len(set(seen)) == 5
    bad = viewer_client.get(f"{URL}/{campaign.pk}/vehicles?vin=1HGCM826300000000")
    assert bad.status_code == 400
    assert "vin" in bad.json()["error"]["fields"]
    assert viewer_client.get(f"{URL}/999999/vehicles").status_code == 404


def test_a_created_after_instant_with_a_large_offset_filters_in_utc(viewer_client, campaigns):
    response = viewer_client.get(URL, {"created_after": "0044-05-13T04:01:57-23:39"})
    assert response.status_code == 200, response.content
    assert response.json()["count"] == len(campaigns)
