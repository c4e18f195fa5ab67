from __future__ import annotations

from django.contrib.messages import get_messages

from core.models import AuditEvent
from core.tests.admin_forms import submitted_form
from ota.campaigns import create_campaign, start_campaign
from ota.choices import CampaignStatus
from ota.models import Campaign

CAMPAIGNS = "/admin/ota/campaign/"


def _messages(response) -> list[str]:
    return [message.message for message in get_messages(response.wsgi_request)]


def _change_form(client, campaign: Campaign) -> dict[str, list[str]]:
    page = client.get(f"{CAMPAIGNS}{campaign.pk}/change/")
    assert page.status_code == 200
    return {**submitted_form(page, Campaign), "_save": ["1"]}


def test_admin_action_starts_a_campaign_through_the_service(
    admin_client, admin_user, fleet_operator, ecm_release
) -> None:
    campaign = create_campaign(operator=fleet_operator, name="c", firmware_ids=[ecm_release.pk])
    response = admin_client.post(CAMPAIGNS, {"action": "start", "_selected_action": [campaign.pk]})
    assert response.status_code == 302
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SCHEDULED
    started = AuditEvent.objects.get(action="campaign.started")
    assert (started.actor_label, started.actor) == (f"user:{admin_user.username}", admin_user)


def test_admin_action_reports_a_refused_transition(
    admin_client, fleet_operator, ecm_release
) -> None:
    campaign = create_campaign(operator=fleet_operator, name="c", firmware_ids=[ecm_release.pk])
    response = admin_client.post(
        CAMPAIGNS, {"action": "resume", "_selected_action": [campaign.pk]}, follow=True
    )
    assert "cannot be resumed" in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.DRAFT


def test_admin_adds_a_campaign_through_the_service(admin_client, admin_user, ecm_release) -> None:
    page = admin_client.get(f"{CAMPAIGNS}add/")
    data = {**submitted_form(page, Campaign), "_save": ["1"], "name": ["from the admin"]}
    data["wave_percentages"] = ["[10, 100]"]
    data |= {
        "campaign_firmware-TOTAL_FORMS": ["1"],
        "campaign_firmware-0-firmware": [str(ecm_release.pk)],
    }
    response = admin_client.post(f"{CAMPAIGNS}add/", data)
    assert response.status_code == 302
    campaign = Campaign.objects.get(name="from the admin")
    assert list(campaign.campaign_firmware.values_list("firmware", flat=True)) == [ecm_release.pk]
    assert campaign.wave_percentages == [10.0, 100.0]
    created = AuditEvent.objects.get(action="campaign.created", object_id=str(campaign.pk))
    assert created.actor_label == f"user:{admin_user.username}"


def test_admin_edits_a_draft_campaign_through_the_service(
    admin_client, admin_user, fleet_operator, ecm_release, vehicle
) -> None:
    campaign = create_campaign(operator=fleet_operator, name="c", firmware_ids=[ecm_release.pk])
    data = _change_form(admin_client, campaign) | {"target_vins": ['["WVWZZZ1JZ3W386752"]']}
    response = admin_client.post(f"{CAMPAIGNS}{campaign.pk}/change/", data)
    assert response.status_code == 302
    assert any("changed successfully" in message for message in _messages(response))
    assert Campaign.objects.get(pk=campaign.pk).target_vins == ["WVWZZZ1JZ3W386752"]
    updated = AuditEvent.objects.get(action="campaign.updated")
    assert updated.actor_label == f"user:{admin_user.username}"
    assert updated.details["fields"] == ["target_vins"]


def test_admin_refuses_to_change_a_started_campaign(
    admin_client, fleet_operator, ecm_release
) -> None:
    campaign = create_campaign(operator=fleet_operator, name="c", firmware_ids=[ecm_release.pk])
    # The operator opened the form while it was a draft; it started before they saved.
    data = _change_form(admin_client, campaign) | {
        "target_vins": ['["WVWZZZ1JZ3W386752"]'],
        "wave_percentages": ["[100.0]"],
    }
    start_campaign(campaign, operator=fleet_operator)
    events_before = AuditEvent.objects.count()

    response = admin_client.post(f"{CAMPAIGNS}{campaign.pk}/change/", data)

    messages = _messages(response)
    assert messages == ["Not saved: a scheduled campaign cannot be edited"]
    stored = Campaign.objects.get(pk=campaign.pk)
    assert (stored.target_vins, stored.wave_percentages) == ([], [1.0, 10.0, 50.0, 100.0])
    assert stored.waves.count() == 4
    assert AuditEvent.objects.count() == events_before


def test_a_started_campaign_shows_read_only(admin_client, fleet_operator, ecm_release) -> None:
    campaign = create_campaign(operator=fleet_operator, name="c", firmware_ids=[ecm_release.pk])
    start_campaign(campaign, operator=fleet_operator)
    form = submitted_form(admin_client.get(f"{CAMPAIGNS}{campaign.pk}/change/"), Campaign)
    assert not {"name", "target_vins", "wave_percentages", "campaign_firmware-0-firmware"} & set(
        form
    )


def test_admin_deletes_a_draft_and_refuses_a_started_campaign(
    admin_client, admin_user, fleet_operator, ecm_release
) -> None:
    draft = create_campaign(operator=fleet_operator, name="d", firmware_ids=[ecm_release.pk])
    started = create_campaign(operator=fleet_operator, name="s", firmware_ids=[ecm_release.pk])
    start_campaign(started, operator=fleet_operator)

    admin_client.post(f"{CAMPAIGNS}{draft.pk}/delete/", {"post": "yes"})
    refused = admin_client.post(f"{CAMPAIGNS}{started.pk}/delete/", {"post": "yes"})

    assert not Campaign.objects.filter(pk=draft.pk).exists()
    deleted = AuditEvent.objects.get(action="campaign.deleted")
    assert (deleted.object_id, deleted.actor_label) == (
        str(draft.pk),
        f"user:{admin_user.username}",
    )
    assert Campaign.objects.filter(pk=started.pk).exists()
    assert (
        _messages(refused)[-1] == "Not deleted: a scheduled campaign cannot be deleted; cancel it"
    )
