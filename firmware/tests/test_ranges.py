from __future__ import annotations

import pytest

from firmware.ranges import ByteRange, RangeNotSatisfiable, if_range_allows, parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=0-", ByteRange(0, 99)),
        ("bytes=90-500", ByteRange(90, 99)),
        ("bytes=-1", ByteRange(99, 99)),
        ("bytes=-500", ByteRange(0, 99)),
        ("bytes=5-2", None),
        ("bytes=0-1,5-6", None),
        ("items=0-5", None),
        ("bytes=-", None),
        ("bytes=abc", None),
    ],
)
def test_parse_range_serves_one_range_or_the_whole_file(
    header: str | None, expected: ByteRange | None
) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable_ranges_raise(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_if_range_needs_the_current_strong_validator() -> None:
    kwargs = {"etag": '"abc"', "last_modified": "Thu, 26 Nov 2026 12:00:00 GMT"}
    assert if_range_allows(None, **kwargs)
    assert if_range_allows('"abc"', **kwargs)
    assert if_range_allows("Thu, 26 Nov 2026 12:00:00 GMT", **kwargs)
    assert not if_range_allows('"old"', **kwargs)
    assert not if_range_allows('W/"abc"', **kwargs)
