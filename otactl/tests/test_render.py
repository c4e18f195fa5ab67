"""What otactl prints under a list: how many rows, of how many, and how to get the next page."""

from __future__ import annotations

from otactl.render import page_footer


def test_footer_gives_the_exact_total_and_the_next_cursor() -> None:
    body = {"results": [{}, {}], "count": 255, "next": "https://h/api/v1/vehicles?cursor=abc"}
    assert page_footer(body) == "2 of 255; next page: --cursor abc"


def test_a_capped_count_reads_more_than_not_an_exact_total() -> None:
    body = {"results": [{}] * 3, "count": 500, "count_exact": False, "next": None}
    assert page_footer(body) == "3 of more than 500"


def test_an_empty_last_page_has_no_next_page() -> None:
    assert page_footer({"results": [], "count": 0, "next": None}) == "0 of 0"
