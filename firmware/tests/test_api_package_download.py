from __future__ import annotations

import hashlib

import pytest
from django.core.files.storage import default_storage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from conftest import vehicle_api_client
from firmware import services
from firmware.models import ZonePackage
from firmware.tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def package(vehicle) -> ZonePackage:
    ecm = factories.firmware(code="ECM", version="2.0.0", data=bytes(range(256)) * 700)
    tcu = factories.firmware(code="TCU", version="1.1.0", data=b"\x00\xff" * 40_000)
    return services.get_or_build_zone_package(
        vehicle=vehicle,
        zonal_gateway_id="ZGW_FRONT",
        items=[factories.item("ECU_011", ecm, "1.0.0"), factories.item("ECU_012", tcu, "1.0.0")],
    )


def _url(package: ZonePackage) -> str:
    return f"/api/v1/ota/package/{package.pk}"


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def _stored(package: ZonePackage) -> bytes:
    with default_storage.open(package.file.name, "rb") as fh:
        return fh.read()


def test_vehicle_downloads_the_whole_package_with_validators(vehicle_client, package) -> None:
    response = vehicle_client.get(_url(package))
    assert response.status_code == 200
    body = _body(response)
    assert body == _stored(package)
    assert hashlib.sha256(body).hexdigest() == package.sha256
    assert response["ETag"] == f'"{package.sha256}"'
    assert response["Content-Length"] == str(package.size)
    assert response["Accept-Ranges"] == "bytes"


def test_head_gives_headers_without_a_body(vehicle_client, package) -> None:
    response = vehicle_client.head(_url(package))
    assert response.status_code == 200
    assert response["Content-Length"] == str(package.size)
    assert _body(response) == b""


def test_range_request_gets_206_with_content_range(vehicle_client, package) -> None:
    response = vehicle_client.get(_url(package), HTTP_RANGE="bytes=100-199")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 100-199/{package.size}"
    assert response["Content-Length"] == "100"
    assert _body(response) == _stored(package)[100:200]


def test_suffix_and_open_ended_ranges(vehicle_client, package) -> None:
    data = _stored(package)
    tail = vehicle_client.get(_url(package), HTTP_RANGE="bytes=-10")
    assert tail.status_code == 206 and _body(tail) == data[-10:]
    rest = vehicle_client.get(_url(package), HTTP_RANGE=f"bytes={package.size - 5}-")
    assert rest.status_code == 206 and _body(rest) == data[-5:]


def test_range_past_the_end_gets_416(vehicle_client, package) -> None:
    response = vehicle_client.get(_url(package), HTTP_RANGE=f"bytes={package.size}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{package.size}"
    assert "Range" in response.json()["error"]["fields"]


def test_if_range_with_a_stale_etag_gets_the_whole_new_file(vehicle_client, package) -> None:
    stale = vehicle_client.get(_url(package), HTTP_RANGE="bytes=10-", HTTP_IF_RANGE='"0000"')
    assert stale.status_code == 200
    assert _body(stale) == _stored(package)
    fresh = vehicle_client.get(_url(package), HTTP_RANGE="bytes=10-", HTTP_IF_RANGE=package.etag)
    assert fresh.status_code == 206


def test_vehicle_cannot_fetch_a_package_meant_for_another(other_vehicle, package) -> None:
    response = vehicle_api_client(other_vehicle.vin).get(_url(package))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_unknown_package_and_unregistered_vehicle_get_404(vehicle_client, package) -> None:
    assert vehicle_client.get("/api/v1/ota/package/" + "0" * 64).status_code == 404
    assert vehicle_api_client("5YJ3E1EA7KF317000").get(_url(package)).status_code == 404


def test_operators_cannot_use_the_vehicle_download(engineer_client: APIClient, package) -> None:
    assert engineer_client.get(_url(package)).status_code in (401, 403)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_download_resumed_after_a_cut_at_any_offset_is_identical(
    vehicle_client, package, cut: float
) -> None:
    offset = int(cut * package.size)
    first = _body(vehicle_client.get(_url(package)))[:offset]  # the connection dropped here
    resumed = vehicle_client.get(
        _url(package), HTTP_RANGE=f"bytes={offset}-", HTTP_IF_RANGE=package.etag
    )
    assert resumed.status_code == 206
    assert first + _body(resumed) == _stored(package)


def test_vehicle_style_64k_range_requests_rebuild_the_file(vehicle_client, package) -> None:
    chunks, offset = [], 0
    while True:
        response = vehicle_client.get(_url(package), HTTP_RANGE=f"bytes={offset}-{offset + 65535}")
        if response.status_code == 416:
            break
        assert response.status_code == 206
        chunks.append(_body(response))
        offset += len(chunks[-1])
    assert hashlib.sha256(b"".join(chunks)).hexdigest() == package.sha256
