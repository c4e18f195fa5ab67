"""The campaign page says only what is true: empty waves, the retry button."""

from __future__ import annotations

import re

import pytest

from console.tests.dashboard_helpers import logged_in, make_campaign, make_update


def _wave_rows(body: str) -> list[str]:
    table = body.split('id="waves-title"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr><td>Wave.*?</tr>", table, re.DOTALL)


@pytest.mark.django_db
def test_an_empty_wave_does_not_read_completed_zero_percent(viewer, vehicle) -> None:
    from ota.models import CampaignWave

    campaign = make_campaign()
    # 1 % of one vehicle is no vehicle: the first wave closed with nobody in it.
    CampaignWave.objects.create(campaign=campaign, index=0, percentage=1, status="completed")
    wave = CampaignWave.objects.create(campaign=campaign, index=1, percentage=100, status="active")
    make_update(campaign, vehicle, state="succeeded", wave=wave)

    body = logged_in(viewer).get(f"/campaigns/{campaign.pk}/").content.decode()

    empty, full = _wave_rows(body)
    assert "Completed" not in empty
    assert "0.0 %" not in empty
    assert "no vehicles" in empty
    assert "100.0 % done" in full


@pytest.mark.django_db
def test_retry_failed_is_offered_only_when_a_vehicle_failed(
    fleet_operator, vehicle, other_vehicle
) -> None:
    campaign = make_campaign(status="running")
    make_update(campaign, vehicle, state="succeeded")
    client = logged_in(fleet_operator)

    body = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-action="pause"' in body
    assert 'data-action="retry"' not in body

    make_update(campaign, other_vehicle, state="rolled_back")
    body = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-action="retry"' in body


@pytest.mark.django_db
def test_the_campaign_page_shows_its_thresholds_schedule_window_and_targeting(viewer) -> None:
    import datetime

    campaign = make_campaign(
        status="draft",
        success_threshold=0.9,
        failure_threshold=0.05,
        start_at=datetime.datetime(2031, 12, 24, 22, 0, tzinfo=datetime.UTC),
        maintenance_window_start=datetime.time(22, 0),
        maintenance_window_end=datetime.time(4, 30),
        target_model_names=["Aurora"],
        max_current_version="2.0.0",
    )
    body = logged_in(viewer).get(f"/campaigns/{campaign.pk}/").content.decode()
    settings = body.split('data-testid="campaign-settings"', 1)[1].split("</dl>", 1)[0]
    assert "90 %" in settings and "5 %" in settings
    assert "2031-12-24 22:00 UTC" in settings
    assert "22:00–04:30 UTC" in settings
    assert "Aurora" in settings and "below 2.0.0" in settings
