from __future__ import annotations

import pytest

from core.models import AuditEvent
from ota.choices import CampaignStatus
from ota.models import Campaign

URL = "/api/v1/campaigns"


@pytest.fixture
def draft(operator_client, ecm_release) -> dict:
    response = operator_client.post(
        URL,
        {"name": "ECM 2.0", "firmware_ids": [ecm_release.pk], "wave_percentages": [1, 10, 50, 100]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_operator_creates_a_draft_campaign(draft, ecm_release) -> None:
    assert draft["status"] == CampaignStatus.DRAFT
    assert draft["firmware"] == [{"id": ecm_release.pk, "ecu_type": "ECM", "version": "2.0.0"}]
    assert draft["wave_percentages"] == [1.0, 10.0, 50.0, 100.0]
    assert AuditEvent.objects.filter(action="campaign.created").count() == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"wave_percentages": [50, 10, 100]}, "wave_percentages"),
        ({"wave_percentages": [10, 50]}, "wave_percentages"),
        ({"firmware_ids": [99999]}, "firmware_ids"),
        ({"firmware_ids": []}, "firmware_ids"),
        ({"failure_threshold": 1.5}, "failure_threshold"),
        ({"min_current_version": "one"}, "min_current_version"),
        ({"min_current_version": "2.0.0", "max_current_version": "1.0.0"}, "max_current_version"),
        ({"target_zones": ["ZGW_MOON"]}, "target_zones"),
        ({"maintenance_window_start": "22:00"}, "maintenance_window_end"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_campaign_names_the_field_and_creates_nothing(
    operator_client, ecm_release, payload, field
) -> None:
    body = {"name": "x", "firmware_ids": [ecm_release.pk], **payload}
    response = operator_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert Campaign.objects.count() == 0


def test_viewer_reads_but_cannot_create_or_drive(viewer_client, draft, ecm_release) -> None:
    assert viewer_client.get(URL).status_code == 200
    assert viewer_client.get(f"{URL}/{draft['id']}").json()["counts"]["queued"] == 0
    response = viewer_client.post(
        URL, {"name": "x", "firmware_ids": [ecm_release.pk]}, format="json"
    )
    assert response.status_code == 403
    assert viewer_client.post(f"{URL}/{draft['id']}/start").status_code == 403


def test_fleet_engineer_and_vehicles_cannot_run_campaigns(
    engineer_client, vehicle_client, draft
) -> None:
    assert engineer_client.post(f"{URL}/{draft['id']}/start").status_code == 403
    assert vehicle_client.get(URL).status_code == 403


def test_anonymous_callers_are_refused(client, draft) -> None:
    assert client.get(URL).status_code in (401, 403)


def test_draft_can_be_edited_and_deleted(operator_client, draft) -> None:
    response = operator_client.patch(f"{URL}/{draft['id']}", {"name": "renamed"}, format="json")
    assert response.status_code == 200
    assert response.json()["name"] == "renamed"
    assert operator_client.delete(f"{URL}/{draft['id']}").status_code == 204
    assert Campaign.objects.count() == 0


def test_started_campaign_is_immutable(operator_client, draft) -> None:
    assert operator_client.post(f"{URL}/{draft['id']}/start").status_code == 202
    response = operator_client.patch(f"{URL}/{draft['id']}", {"name": "renamed"}, format="json")
    assert response.status_code == 409
    assert operator_client.delete(f"{URL}/{draft['id']}").status_code == 409
    assert Campaign.objects.get().name == "ECM 2.0"


def test_actions_answer_202_and_refuse_wrong_states(operator_client, draft, vehicle) -> None:
    base = f"{URL}/{draft['id']}"
    assert operator_client.post(f"{base}/resume").status_code == 409
    start = operator_client.post(f"{base}/start")
    assert start.status_code == 202
    assert start.json()["status"] == CampaignStatus.SCHEDULED
    assert operator_client.post(f"{base}/start").status_code == 409
    assert (
        operator_client.post(f"{base}/pause", {"reason": "supplier recall"}, format="json").json()[
            "status"
        ]
        == CampaignStatus.PAUSED
    )
    assert operator_client.post(f"{base}/resume").status_code == 202
    assert operator_client.post(f"{base}/retry-failed").status_code == 409  # nothing started yet
    assert operator_client.post(f"{base}/cancel").json()["status"] == CampaignStatus.CANCELLED
    actions = list(
        AuditEvent.objects.filter(object_type="campaign").values_list("action", flat=True)
    )
    assert actions == [
        "campaign.created",
        "campaign.started",
        "campaign.paused",
        "campaign.resumed",
        "campaign.cancelled",
    ]


def test_campaign_vehicle_states_are_listed(operator_client, viewer_client, draft, vehicle) -> None:
    from ota.engine import run_tick

    operator_client.post(f"{URL}/{draft['id']}/start")
    run_tick()
    response = viewer_client.get(f"{URL}/{draft['id']}/vehicles")
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["vin"] == vehicle.vin
    assert row["state"] == "offered"
    assert viewer_client.get(f"{URL}/{draft['id']}/vehicles?state=failed").json()["count"] == 0
    bad = viewer_client.get(f"{URL}/{draft['id']}/vehicles?state=sleeping")
    assert bad.status_code == 400
    assert "state" in bad.json()["error"]["fields"]


def test_campaign_list_takes_a_constant_number_of_queries(
    operator_client, ecm_release, django_assert_max_num_queries
) -> None:
    for n in range(5):
        operator_client.post(
            URL, {"name": f"c{n}", "firmware_ids": [ecm_release.pk]}, format="json"
        )
    with django_assert_max_num_queries(8):
        response = operator_client.get(URL)
    assert response.json()["count"] == 5


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/null,null/vehicles"),
        ("get", "/abc"),
        ("post", "/1e3/start"),
        ("get", "/-1/vehicles"),
    ],
)
def test_a_campaign_id_that_is_not_a_number_is_not_found(operator_client, method, path) -> None:
    response = getattr(operator_client, method)(f"{URL}{path}")
    assert response.status_code == 404
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("vins", "message"),
    [
        (
            ["WVWZZZ1JZ3W38675"],
            "'WVWZZZ1JZ3W38675' is not a VIN (17 capital letters and digits, no I, O or Q)",
        ),
        (
            ["wvwzzz1jz3w386752"],
            "'wvwzzz1jz3w386752' is not a VIN (17 capital letters and digits, no I, O or Q)",
        ),
        (
            ["WVWZZZ1JZ3W38675O"],
            "'WVWZZZ1JZ3W38675O' is not a VIN (17 capital letters and digits, no I, O or Q)",
        ),
        (["1HGCM82633A004352"], "no vehicle 1HGCM82633A004352 is registered"),
    ],
)
def test_target_vins_are_registered_vins(operator_client, ecm_release, vins, message) -> None:
    body = {"name": "x", "firmware_ids": [ecm_release.pk], "target_vins": vins}
    response = operator_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["target_vins"] == [message]
    assert Campaign.objects.count() == 0


def test_an_edit_to_an_unknown_vin_is_refused(operator_client, draft) -> None:
    response = operator_client.patch(
        f"{URL}/{draft['id']}", {"target_vins": ["1HGCM82633A004352"]}, format="json"
    )
    assert response.status_code == 400
    assert "target_vins" in response.json()["error"]["fields"]
    assert Campaign.objects.get(pk=draft["id"]).target_vins == []


def test_target_vins_of_registered_vehicles_are_kept(operator_client, ecm_release, vehicle) -> None:
    body = {"name": "x", "firmware_ids": [ecm_release.pk], "target_vins": [vehicle.vin]}
    response = operator_client.post(URL, body, format="json")
    assert response.status_code == 201, response.json()
    assert Campaign.objects.get().target_vins == [vehicle.vin]
