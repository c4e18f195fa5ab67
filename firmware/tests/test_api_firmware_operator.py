from __future__ import annotations

import pytest

from core.models import AuditEvent
from firmware.choices import FirmwareStatus
from firmware.models import Firmware, FirmwareDependency
from firmware.tests import factories

pytestmark = pytest.mark.django_db
URL = "/api/v1/firmware"


@pytest.fixture
def releases() -> dict[str, Firmware]:
    ecm_old = factories.firmware(code="ECM", version="1.0.0", hardware_versions=("2.0",))
    ecm_new = factories.firmware(code="ECM", version="1.2.0", hardware_versions=("2.0", "3.0"))
    bcm = factories.firmware(code="BCM", version="4.1.0", hardware_versions=("1.0",))
    return {"ecm_old": ecm_old, "ecm_new": ecm_new, "bcm": bcm}


def _versions(response) -> list[str]:
    return [f"{row['ecu_type']} {row['version']}" for row in response.json()["results"]]


def test_the_list_is_paginated_with_its_total_and_sorted_by_type_then_newest(
    viewer_client, releases
) -> None:
    response = viewer_client.get(URL, {"limit": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert _versions(response) == ["BCM 4.1.0", "ECM 1.2.0"]
    assert body["next"] is not None
    assert _versions(viewer_client.get(URL, {"limit": 2, "offset": 2})) == ["ECM 1.0.0"]


def test_the_list_filters_by_ecu_type_hardware_version_and_version(viewer_client, releases) -> None:
    assert _versions(viewer_client.get(URL, {"ecu_type": "ECM"})) == ["ECM 1.2.0", "ECM 1.0.0"]
    assert _versions(viewer_client.get(URL, {"hardware_version": "3.0"})) == ["ECM 1.2.0"]
    assert _versions(viewer_client.get(URL, {"version": "4.1.0"})) == ["BCM 4.1.0"]


def test_the_list_filters_by_status(viewer_client, releases) -> None:
    Firmware.objects.filter(pk=releases["ecm_old"].pk).update(status=FirmwareStatus.DEPRECATED)
    assert _versions(viewer_client.get(URL, {"status": "deprecated"})) == ["ECM 1.0.0"]
    assert len(_versions(viewer_client.get(URL, {"status": "available"}))) == 2


def test_an_unknown_status_is_a_400_naming_it(viewer_client, releases) -> None:
    response = viewer_client.get(URL, {"status": "withdrawn"})
    assert response.status_code == 400
    assert "status" in response.json()["error"]["fields"]


def test_a_bad_limit_is_a_400_naming_it(viewer_client, releases) -> None:
    response = viewer_client.get(URL, {"limit": "lots"})
    assert response.status_code == 400
    assert "limit" in response.json()["error"]["fields"]


def test_the_list_takes_the_same_number_of_queries_for_more_releases(
    viewer_client, releases, django_assert_max_num_queries
) -> None:
    with django_assert_max_num_queries(8) as few:
        viewer_client.get(URL)
    for minor in range(5):
        factories.firmware(code="TCU", version=f"1.{minor}.0", hardware_versions=("1.0", "2.0"))
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert viewer_client.get(URL).json()["count"] == 8


def test_detail_has_notes_uploader_hardware_and_dependencies(viewer_client, releases) -> None:
    release = releases["ecm_new"]
    FirmwareDependency.objects.create(
        firmware=release, required_ecu_type=releases["bcm"].ecu_type, min_version="4.0.0"
    )
    response = viewer_client.get(f"{URL}/{release.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == "1.2.0"
    assert body["hardware_versions"] == ["2.0", "3.0"]
    assert body["dependencies"] == [{"ecu_type": "BCM", "min_version": "4.0.0"}]
    assert body["sha256"] == release.sha256
    assert "release_notes" in body and "uploaded_by" in body


def test_an_unknown_release_is_a_json_404(viewer_client) -> None:
    response = viewer_client.get(f"{URL}/999999")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_anonymous_callers_and_vehicles_cannot_list(client, vehicle_client, releases) -> None:
    assert client.get(URL).status_code in (401, 403)
    assert vehicle_client.get(URL).status_code == 403


def test_a_fleet_engineer_deprecates_a_release_once_with_one_audit_event(
    engineer_client, fleet_engineer, releases
) -> None:
    release = releases["ecm_new"]
    response = engineer_client.post(f"{URL}/{release.pk}/deprecate")
    assert response.status_code == 200
    assert response.json()["status"] == "deprecated"
    again = engineer_client.post(f"{URL}/{release.pk}/deprecate")
    assert again.status_code == 200
    events = AuditEvent.objects.filter(action="firmware.deprecated", object_id=str(release.pk))
    assert events.count() == 1
    assert events.get().actor_label == f"user:{fleet_engineer.username}"


def test_a_viewer_or_operator_cannot_deprecate(viewer_client, operator_client, releases) -> None:
    release = releases["bcm"]
    assert viewer_client.post(f"{URL}/{release.pk}/deprecate").status_code == 403
    assert operator_client.post(f"{URL}/{release.pk}/deprecate").status_code == 403
    release.refresh_from_db()
    assert release.status == FirmwareStatus.AVAILABLE


def test_a_deprecated_release_cannot_start_a_new_campaign(
    engineer_client, operator_client, releases
) -> None:
    release = releases["bcm"]
    engineer_client.post(f"{URL}/{release.pk}/deprecate")
    response = operator_client.post(
        "/api/v1/campaigns", {"name": "BCM", "firmware_ids": [release.pk]}, format="json"
    )
    assert response.status_code == 400
    assert "firmware_ids" in response.json()["error"]["fields"]


def _image(release: Firmware) -> bytes:
    with release.file.open("rb") as fh:
        return fh.read()


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_a_fleet_engineer_downloads_the_whole_image(engineer_client, releases) -> None:
    release = releases["ecm_old"]
    response = engineer_client.get(f"{URL}/{release.pk}/image")
    assert response.status_code == 200
    assert _body(response) == _image(release)
    assert response["Content-Length"] == str(release.size)
    assert response["ETag"] == f'"{release.sha256}"'
    assert 'filename="ECM-1.0.0.bin"' in response["Content-Disposition"]


def test_a_range_answers_206_with_those_bytes(engineer_client, releases) -> None:
    release = releases["ecm_old"]
    response = engineer_client.get(f"{URL}/{release.pk}/image", HTTP_RANGE="bytes=10-19")
    assert response.status_code == 206
    assert _body(response) == _image(release)[10:20]
    assert response["Content-Range"] == f"bytes 10-19/{release.size}"


def test_a_range_past_the_end_is_a_416_naming_range(engineer_client, releases) -> None:
    release = releases["ecm_old"]
    response = engineer_client.get(f"{URL}/{release.pk}/image", HTTP_RANGE=f"bytes={release.size}-")
    assert response.status_code == 416
    assert "Range" in response.json()["error"]["fields"]


def test_if_range_with_another_etag_sends_the_whole_image(engineer_client, releases) -> None:
    release = releases["ecm_old"]
    response = engineer_client.get(
        f"{URL}/{release.pk}/image", HTTP_RANGE="bytes=10-19", HTTP_IF_RANGE='"other"'
    )
    assert response.status_code == 200
    assert _body(response) == _image(release)


def test_a_viewer_or_vehicle_cannot_download_an_image(viewer_client, vehicle_client, releases):
    release = releases["ecm_old"]
    assert viewer_client.get(f"{URL}/{release.pk}/image").status_code == 403
    assert vehicle_client.get(f"{URL}/{release.pk}/image").status_code == 403


def test_upload_still_answers_on_its_own_path(engineer_client) -> None:
    assert engineer_client.get(f"{URL}/upload").status_code == 405
