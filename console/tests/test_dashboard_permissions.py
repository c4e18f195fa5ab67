from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from console.tests.dashboard_helpers import logged_in, make_campaign

PAGES = ["/", "/campaigns/", "/vehicles/", "/diagnostics/", "/pqc/"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES)
def test_logged_out_user_is_sent_to_login(url: str) -> None:
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.django_db
def test_logged_out_user_sees_no_vehicle_page(vehicle) -> None:
    response = Client().get(f"/vehicles/{vehicle.vin}/")
    assert response.status_code == 302
    assert vehicle.vin not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES)
def test_user_without_role_is_refused(url: str) -> None:
    nobody = User.objects.create_user("nobody", password="pw-nobody")
    assert logged_in(nobody).get(url).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES)
def test_viewer_reads_every_page(viewer, url: str) -> None:
    assert logged_in(viewer).get(url).status_code == 200


@pytest.mark.django_db
def test_viewer_cannot_start_a_campaign(viewer) -> None:
    campaign = make_campaign(status="draft")
    response = logged_in(viewer).post(f"/campaigns/{campaign.pk}/start")
    assert response.status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == "draft"


@pytest.mark.django_db
def test_viewer_sees_no_campaign_buttons(viewer) -> None:
    campaign = make_campaign(status="running")
    body = logged_in(viewer).get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-action="pause"' not in body


@pytest.mark.django_db
def test_logged_out_post_to_campaign_action_changes_nothing() -> None:
    campaign = make_campaign(status="draft")
    response = Client().post(f"/campaigns/{campaign.pk}/start")
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "draft"


@pytest.mark.django_db
def test_viewer_cannot_send_diagnostics(viewer, vehicle) -> None:
    from diagnostics.models import DiagnosticRequest

    response = logged_in(viewer).post(
        "/diagnostics/send",
        {
            "vehicle": vehicle.vin,
            "target": "ECU_001",
            "service": 0x22,
            "parameters": "F190",
            "timeout": 5,
        },
    )
    assert response.status_code == 403
    assert not DiagnosticRequest.objects.exists()


@pytest.mark.django_db
def test_viewer_sees_no_send_form(viewer, vehicle) -> None:
    body = logged_in(viewer).get(f"/diagnostics/?vehicle={vehicle.vin}").content.decode()
    assert 'id="uds-form"' not in body
    assert "needs the operator or fleet engineer role" in body
