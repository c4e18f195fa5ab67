from __future__ import annotations

import pytest
import semver
from hypothesis import given
from hypothesis import strategies as st

from ecus.versions import InvalidVersion, SemVer

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
)


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
