from __future__ import annotations

import pytest
from django.test import Client

from core.models import AuditEvent
from firmware.choices import FirmwareStatus
from firmware.models import Firmware
from firmware.tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_upload_page_has_the_form_and_progress_bar(admin_client_: Client) -> None:
    factories.ecu_type("ECM")
    response = admin_client_.get("/admin/firmware/firmware/upload/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="upload-progress"' in html
    assert 'data-upload-url="/api/v1/firmware/upload"' in html
    assert "firmware/upload.js" in html
    assert (
        admin_client_.get("/admin/firmware/firmware/add/").url == "/admin/firmware/firmware/upload/"
    )


def test_deprecate_action_keeps_the_row_and_names_the_operator(
    admin_client_: Client, admin_user
) -> None:
    fw = factories.firmware()
    response = admin_client_.post(
        "/admin/firmware/firmware/",
        {"action": "deprecate_selected", "_selected_action": [fw.pk]},
    )
    assert response.status_code == 302
    assert Firmware.objects.get(pk=fw.pk).status == FirmwareStatus.DEPRECATED
    event = AuditEvent.objects.get(action="firmware.deprecated", object_id=str(fw.pk))
    assert (event.actor_label, event.actor) == ("user:ada", admin_user)


def test_a_release_cannot_be_edited_in_the_admin(admin_client_: Client) -> None:
    fw = factories.firmware()
    compatibility = list(fw.compatibilities.values_list("hardware_version", flat=True))
    response = admin_client_.post(
        f"/admin/firmware/firmware/{fw.pk}/change/",
        {
            "compatibilities-TOTAL_FORMS": "1",
            "compatibilities-INITIAL_FORMS": "0",
            "compatibilities-0-hardware_version": "9.9",
        },
    )
    assert response.status_code == 403
    assert list(fw.compatibilities.values_list("hardware_version", flat=True)) == compatibility


def test_firmware_cannot_be_deleted_from_the_admin(admin_client_: Client) -> None:
    fw = factories.firmware()
    response = admin_client_.post(f"/admin/firmware/firmware/{fw.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Firmware.objects.filter(pk=fw.pk).exists()


@pytest.mark.parametrize("model", ["firmware", "zonepackage", "signingkey"])
def test_admin_lists_render(admin_client_: Client, model: str) -> None:
    factories.firmware()
    assert admin_client_.get(f"/admin/firmware/{model}/").status_code == 200
