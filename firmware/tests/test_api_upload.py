from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from core.tokens import create_token
from firmware.models import Firmware
from firmware.tests import factories

pytestmark = pytest.mark.django_db
URL = "/api/v1/firmware/upload"


def _stored_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _form(**overrides: object) -> dict[str, object]:
    form: dict[str, object] = {
        "ecu_type": "ECM",
        "version": "1.4.0",
        "hardware_versions": "2.0, 2.1",
        "file": SimpleUploadedFile("ecm app.bin", b"\x01\x02firmware" * 300),
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def test_fleet_engineer_uploads_with_a_token(fleet_engineer) -> None:
    factories.ecu_type("ECM")
    client = APIClient()
    token = create_token(fleet_engineer, actor=fleet_engineer, lifetime=None)[1]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.post(URL, _form(), format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["ecu_type"] == "ECM"
    assert body["version"] == "1.4.0"
    assert body["size"] == 3000
    assert body["hardware_versions"] == ["2.0", "2.1"]
    assert body["original_filename"] == "ecm app.bin"
    assert body["same_bytes_as"] == []
    assert Firmware.objects.get(pk=body["id"]).uploaded_by == fleet_engineer


@pytest.mark.parametrize("client_fixture", ["operator_client", "viewer_client", "vehicle_client"])
def test_other_roles_cannot_upload(request: pytest.FixtureRequest, client_fixture: str) -> None:
    factories.ecu_type("ECM")
    client = request.getfixturevalue(client_fixture)
    response = client.post(URL, _form(), format="multipart")
    assert response.status_code == 403
    assert not Firmware.objects.exists()


def test_anonymous_cannot_upload(db) -> None:
    response = APIClient().post(URL, _form(), format="multipart")
    assert response.status_code in (401, 403)
    assert not Firmware.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "status", "field"),
    [
        ({"file": None}, 400, "file"),
        ({"version": None}, 400, "version"),
        ({"ecu_type": None}, 400, "ecu_type"),
        ({"version": "banana"}, 400, "version"),
        ({"ecu_type": "XYZ"}, 400, "ecu_type"),
        ({"file": SimpleUploadedFile("empty.bin", b"")}, 400, "file"),
        ({"version": "1.0.0"}, 409, "version"),
        ({"hardware_versions": "2.x"}, 400, "hardware_versions"),
        ({"hardware_versions": "2.0 2.1"}, 400, "hardware_versions"),
        ({"hardware_versions": "2.0,,v3"}, 400, "hardware_versions"),
    ],
)
def test_bad_input_gets_json_naming_the_field_and_stores_nothing(
    engineer_client: APIClient, overrides: dict[str, object], status: int, field: str
) -> None:
    factories.firmware(code="ECM", version="1.0.0")
    rows, files = Firmware.objects.count(), _stored_files()
    response = engineer_client.post(URL, _form(**overrides), format="multipart")
    assert response.status_code == status
    assert field in response.json()["error"]["fields"]
    assert Firmware.objects.count() == rows
    assert _stored_files() == files


def test_oversized_upload_is_refused_with_413(engineer_client: APIClient, settings) -> None:
    settings.FIRMWARE_MAX_UPLOAD_BYTES = 1000
    factories.ecu_type("ECM")
    response = engineer_client.post(
        URL, _form(file=SimpleUploadedFile("big.bin", b"x" * 200_000)), format="multipart"
    )
    assert response.status_code == 413
    assert "file" in response.json()["error"]["fields"]
    assert not Firmware.objects.exists()
    assert _stored_files() == set()


def test_identical_bytes_are_reported_not_refused(engineer_client: APIClient) -> None:
    first = factories.firmware(code="ECM", version="1.0.0", data=b"same" * 100)
    response = engineer_client.post(
        URL, _form(file=SimpleUploadedFile("again.bin", b"same" * 100)), format="multipart"
    )
    assert response.status_code == 201
    assert response.json()["same_bytes_as"] == [
        {"id": first.pk, "ecu_type": "ECM", "version": "1.0.0"}
    ]


def test_a_hardware_version_is_a_version(engineer_client: APIClient) -> None:
    factories.ecu_type("ECM")
    response = engineer_client.post(URL, _form(hardware_versions="2.0, rev B"), format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["hardware_versions"] == [
        "'rev B' is not a semantic version (MAJOR.MINOR.PATCH)"
    ]


def test_a_hardware_version_spelled_unlike_the_fleet_is_refused(
    engineer_client: APIClient, registry
) -> None:
    # The registry's ECM hardware is "2.0" and "2.1"; compatibility matches the text exactly,
    # so "2.0.0" would make a release no ECM can ever receive.
    response = engineer_client.post(URL, _form(hardware_versions="2.1, 2.0.0"), format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["hardware_versions"] == [
        "'2.0.0' is written '2.0' in this fleet's ECM hardware"
    ]
    assert not Firmware.objects.exists()


def test_hardware_no_ecu_has_yet_is_accepted(engineer_client: APIClient, registry) -> None:
    response = engineer_client.post(URL, _form(hardware_versions="4.0"), format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["hardware_versions"] == ["4.0"]
