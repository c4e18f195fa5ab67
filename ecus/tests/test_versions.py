from __future__ import annotations

import pytest
import semver
from hypothesis import given
from hypothesis import strategies as st

from ecus.versions import VERSION_MAX_LENGTH, InvalidVersion, SemVer

numbers = st.integers(min_value=0, max_value=10**12 - 1)
alnum_ident = st.from_regex(r"\A[0-9A-Za-z-]*[A-Za-z-][0-9A-Za-z-]*\Z").filter(
    lambda s: len(s) <= 12
)
numeric_ident = st.integers(min_value=0, max_value=10**6).map(str)
prerelease = st.lists(st.one_of(alnum_ident, numeric_ident), max_size=4)
versions = st.builds(
    lambda major, minor, patch, pre: (
        f"{major}.{minor}.{patch}" + ("-" + ".".join(pre) if pre else "")
    ),
    numbers,
    numbers,
    numbers,
    prerelease,
    # Versions longer than the stored field are refused; their refusal has its own test.
).filter(lambda text: len(text) <= VERSION_MAX_LENGTH)


@given(versions)
def test_parse_and_str_round_trip(text: str) -> None:
    assert str(SemVer.parse(text)) == text


@given(versions, versions)
def test_sort_key_order_is_semver_precedence(a: str, b: str) -> None:
    expected = semver.Version.parse(a).compare(b)
    key_a, key_b = SemVer.parse(a).sort_key, SemVer.parse(b).sort_key
    assert (key_a > key_b) - (key_a < key_b) == expected


@given(versions)
def test_sort_key_is_lowercase_hex(text: str) -> None:
    key = SemVer.parse(text).sort_key
    assert set(key) <= set("0123456789abcdef")


def test_spec_example_ordering() -> None:
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.0.0",
        "2.1.0",
        "2.1.1",
    ]
    assert sorted(chain, key=lambda v: SemVer.parse(v).sort_key) == chain


def test_build_metadata_is_ignored_in_precedence() -> None:
    assert SemVer.parse("1.2.3+build.7") == SemVer.parse("1.2.3")
    assert SemVer.parse("1.2.3+build.7").sort_key == SemVer.parse("1.2.3").sort_key


@pytest.mark.parametrize(
    "text", ["", "1", "1.2", "01.2.3", "1.2.3-", "1.2.3-01", "v1.2.3", "a.b.c"]
)
def test_rejects_strings_that_are_not_semver(text: str) -> None:
    with pytest.raises(InvalidVersion):
        SemVer.parse(text)


def test_coerce_pads_short_vehicle_versions() -> None:
    assert str(SemVer.coerce("2.0")) == "2.0.0"
    assert str(SemVer.coerce("3")) == "3.0.0"
    with pytest.raises(InvalidVersion):
        SemVer.coerce("two")


def test_rejects_fields_too_wide_for_the_key() -> None:
    with pytest.raises(InvalidVersion):
        SemVer.parse("1" * 13 + ".0.0")


@pytest.mark.parametrize(
    "text", ["1.2.2\n", "1.2.2\r\n", " 1.2.2", "1.2.2 ", "1.2.2\t", "1.2.2\x00", "1.2.٣"]
)
def test_rejects_versions_with_surrounding_or_foreign_characters(text: str) -> None:
    with pytest.raises(InvalidVersion):
        SemVer.parse(text)
    with pytest.raises(InvalidVersion):
        SemVer.coerce(text)


def test_rejects_short_forms_with_whitespace() -> None:
    for text in ("2.0\n", " 3", "2.0 "):
        with pytest.raises(InvalidVersion):
            SemVer.coerce(text)


def test_rejects_versions_longer_than_a_package_field() -> None:
    longest = "1.0.0-" + "a" * (VERSION_MAX_LENGTH - 6)
    assert str(SemVer.parse(longest)) == longest
    with pytest.raises(InvalidVersion, match="longer than 64"):
        SemVer.parse(longest + "b")
    with pytest.raises(InvalidVersion, match="longer than 64"):
        SemVer.coerce("1." + "0" * 70)


@given(versions)
def test_every_accepted_version_fits_the_package_version_field(text: str) -> None:
    from firmware.otap import VERSION_RE

    try:
        SemVer.coerce(text)
    except InvalidVersion:
        return
    assert VERSION_RE.fullmatch(text)


def _vci(vin: str, sw_version: str) -> dict:
    return {
        "vin": vin,
        "timestamp": 1767225600,
        "ecus": [{"ecu_id": "ECU_001", "sw_version": sw_version, "hw_version": "2.0"}],
    }


@pytest.mark.parametrize("bad", ["1.2.2\n", "1.2.2 ", "v1.2.2", "1.0.0-" + "a" * 80])
def test_vci_refuses_a_version_that_is_not_semver_naming_the_field(
    vehicle, vehicle_client, bad: str
) -> None:
    from ecus.models import Ecu

    response = vehicle_client.post(
        f"/api/v1/vehicles/{vehicle.vin}/vci", _vci(vehicle.vin, bad), format="json"
    )
    assert response.status_code == 400
    assert "ecus[0].sw_version" in response.json()["error"]["fields"]
    assert Ecu.objects.get(vehicle=vehicle, ecu_id="ECU_001").sw_version == "1.1.1"


@pytest.mark.parametrize("bad", ["2.0.0\n", "\t2.0.0", "2.0.0-" + "x" * 80])
def test_status_report_refuses_a_running_version_that_is_not_semver(
    vehicle, vehicle_client, bad: str
) -> None:
    response = vehicle_client.post(
        "/api/v1/ota/status",
        {"update_id": 1, "sequence": 1, "vmg_state": 6, "running_versions": {"ECU_001": bad}},
        format="json",
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    # Named flat by the service, or nested by the request's shape check before it.
    assert "running_versions.ECU_001" in fields or "ECU_001" in fields.get("running_versions", {})
