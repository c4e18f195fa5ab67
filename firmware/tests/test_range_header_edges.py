from __future__ import annotations

import pytest

from conftest import vehicle_api_client
from firmware import services
from firmware.models import ZonePackage
from firmware.ranges import ByteRange, RangeNotSatisfiable, parse_range
from firmware.tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def package(vehicle) -> ZonePackage:
    ecm = factories.firmware(code="ECM", version="2.0.0", data=bytes(range(256)) * 300)
    return services.get_or_build_zone_package(
        vehicle=vehicle,
        zonal_gateway_id="ZGW_FRONT",
        items=[factories.item("ECU_011", ecm, "1.0.0")],
    )


@pytest.mark.parametrize("header", ["bytes=" + "9" * 5000 + "-", "bytes=" + "1" * 20 + "-"])
def test_a_first_position_past_any_file_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)


@pytest.mark.parametrize("header", ["bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000])
def test_a_last_position_or_suffix_past_the_file_is_clamped_to_it(header: str) -> None:
    assert parse_range(header, 1000) == ByteRange(0, 999)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 9)),
        (" bytes=0-9 ", ByteRange(0, 9)),
        ("bytes=0-9\t", ByteRange(0, 9)),
        ("Bytes=10-", ByteRange(10, 999)),
        ("bytes=-10", ByteRange(990, 999)),
        ("bytes=0000000000000000000000005-9", ByteRange(5, 9)),
    ],
)
def test_whitespace_and_case_around_a_range_are_tolerated(header: str, expected) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header", ["bytes = 0 - 9", "bytes=0-9,20-29", "bytes=\x0b0-9", "bytes=٠-٩", "items=0-9"]
)
def test_ranges_outside_the_grammar_are_ignored(header: str) -> None:
    assert parse_range(header, 1000) is None


def test_thousands_of_digits_in_range_get_a_json_416(vehicle, package) -> None:
    client = vehicle_api_client(vehicle.vin)
    response = client.get(
        f"/api/v1/ota/package/{package.pk}", HTTP_RANGE="bytes=" + "9" * 5000 + "-"
    )
    assert response.status_code == 416
    assert response.json()["error"]["fields"]["Range"]
    assert response["Content-Range"] == f"bytes */{package.size}"
