"""The admin as operators read it: model names, object names, filters, no internal keys."""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib import admin

from console.tests.dashboard_helpers import logged_in, make_firmware


def test_model_names_read_as_english() -> None:
    names = {
        model._meta.label: (str(model._meta.verbose_name), str(model._meta.verbose_name_plural))
        for model in apps.get_models()
    }
    assert names["ecus.EcuType"] == ("ECU type", "ECU types")
    assert names["ecus.Ecu"] == ("ECU", "ECUs")
    assert names["firmware.FirmwareCompatibility"][1] == "firmware compatibilities"
    assert names["firmware.FirmwareDependency"][1] == "firmware dependencies"
    assert names["webhooks.WebhookDelivery"][1] == "webhook deliveries"
    assert names["ota.OtaUpdate"][0] == "OTA update"
    assert names["vehicles.VciSnapshot"][0] == "VCI snapshot"
    # No English plural ends in "ys" after a consonant, and acronyms keep their capitals.
    for label, (_, plural) in names.items():
        assert not re.search(r"[^aeiou]ys$", plural), label
        assert not re.search(r"\b(ecu|ota|vci)s?\b", plural), label


def test_every_admin_page_title_uses_the_plural_name() -> None:
    titles = [str(model._meta.verbose_name_plural) for model in admin.site._registry]
    assert "ECU types" in titles
    assert "firmware releases" in titles


@pytest.mark.django_db
def test_objects_are_named_by_what_operators_know(vehicle) -> None:
    firmware = make_firmware("ECM", "9.0.0")
    assert str(firmware) == "ECM 9.0.0"
    ecu = vehicle.ecus.select_related("vehicle").first()
    assert str(ecu) == f"{ecu.ecu_id} of {vehicle.vin}"


@pytest.mark.django_db
def test_firmware_and_ecu_pages_show_no_internal_version_key(admin_user, vehicle) -> None:
    firmware = make_firmware("ECM", "9.0.0")
    client = logged_in(admin_user)
    body = client.get(f"/admin/firmware/firmware/{firmware.pk}/change/").content.decode()
    assert firmware.version_key not in body
    assert "Version key" not in body
    ecu = vehicle.ecus.first()
    body = client.get(f"/admin/ecus/ecu/{ecu.pk}/change/").content.decode()
    assert "Sw version key" not in body


@pytest.mark.django_db
def test_vehicle_filter_names_vehicles_that_never_connected(admin_user, vehicle) -> None:
    body = logged_in(admin_user).get("/admin/vehicles/vehicle/").content.decode()
    assert 'href="?tls_group="' not in body
    assert "never connected" in body
    body = logged_in(admin_user).get("/admin/vehicles/vehicle/?tls_group=none").content.decode()
    assert vehicle.vin in body


@pytest.mark.django_db
def test_admin_pages_have_the_console_favicon(admin_user) -> None:
    body = logged_in(admin_user).get("/admin/").content.decode()
    assert re.search(r'<link rel="icon" href="[^"]*favicon[^"]*\.svg"', body)


@pytest.mark.django_db
def test_audit_list_shortens_digest_ids_and_has_room_for_its_columns(admin_user) -> None:
    from core.audit import record_event

    digest = "ab" * 32
    record_event(action="ecu_registry.imported", object_type="ecu_registry", object_id=digest)
    body = logged_in(admin_user).get("/admin/core/auditevent/").content.decode()
    assert f'title="{digest}">{digest[:16]}…<' in body
    assert 'id="nav-sidebar"' not in body


@pytest.mark.django_db
def test_admin_login_page_has_a_level_one_heading(client) -> None:
    body = client.get("/admin/login/").content.decode()
    assert re.search(r"<h1[^>]*>", body)


@pytest.mark.django_db
def test_api_docs_page_has_the_console_favicon(viewer) -> None:
    body = logged_in(viewer).get("/api/docs/").content.decode()
    assert re.search(r'<link rel="icon" href="[^"]*favicon[^"]*\.svg"', body)
