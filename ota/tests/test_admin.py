from __future__ import annotations

from ota.choices import CampaignStatus
from ota.models import Campaign


def test_admin_action_starts_a_campaign_through_the_service(
    admin_client, fleet_operator, ecm_release
) -> None:
    from ota.campaigns import create_campaign

    campaign = create_campaign(operator=fleet_operator, name="c", firmware_ids=[ecm_release.pk])
    response = admin_client.post(
        "/admin/ota/campaign/", {"action": "start", "_selected_action": [campaign.pk]}
    )
    assert response.status_code == 302
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SCHEDULED


def test_admin_action_reports_a_refused_transition(
    admin_client, fleet_operator, ecm_release
) -> None:
    from ota.campaigns import create_campaign

    campaign = create_campaign(operator=fleet_operator, name="c", firmware_ids=[ecm_release.pk])
    response = admin_client.post(
        "/admin/ota/campaign/", {"action": "resume", "_selected_action": [campaign.pk]}, follow=True
    )
    assert "cannot be resumed" in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.DRAFT
