"""Paging and filtering a 10,000-vehicle fleet on the dashboard's vehicle list, in Chromium."""

from __future__ import annotations

from typing import Any

import pytest

from console.tests.browser.conftest import log_in, screenshot
from console.tests.browser.fleet_data import PASSWORD, make_user
from core.roles import Role

pytestmark = pytest.mark.slow

FLEET_SIZE = 10_000
PAGE = 50
MODELS = ("Aurora", "Borealis", "Cirrus", "Dynamo", "Equinox")


def _vin(serial: int) -> str:
    return f"BRWSR{serial:012d}"


def _status(serial: int) -> str:
    # A small set (121 vehicles) whose every page can be walked to the end.
    return "decommissioned" if serial % 83 == 0 else "active"


def _seed_fleet() -> None:
    """10,000 vehicles in bulk; the list needs no ECUs, so none are made (the seeding command
    would add a million ECU rows for nothing here)."""
    from vehicles.models import Vehicle

    Vehicle.objects.bulk_create(
        (
            Vehicle(
                # Inserted in a shuffled order, so the list's VIN order is not the row order.
                vin=_vin(serial),
                model_name=MODELS[serial % len(MODELS)],
                model_year=2020 + serial % 7,
                status=_status(serial),
            )
            for serial in sorted(range(FLEET_SIZE), key=lambda n: (n * 7919) % FLEET_SIZE)
        ),
        batch_size=2000,
    )


def _shown_vins(page: Any) -> list[str]:
    return page.locator("#live-region tbody tr td:first-child a").all_inner_texts()


def _total(page: Any) -> int:
    return int(page.locator("#fleet-total strong").inner_text().replace(",", ""))


def _turn(page: Any, rel: str) -> list[str]:
    page.locator(f"nav.pager a[rel={rel}]").click()
    page.wait_for_load_state("load")
    return _shown_vins(page)


def test_pages_forward_and_back_through_ten_thousand_vehicles(console, browser_page) -> None:
    _seed_fleet()
    make_user("vera", Role.VIEWER)
    every_vin = sorted(_vin(serial) for serial in range(FLEET_SIZE))
    page = browser_page
    log_in(page, "vera", PASSWORD)

    page.goto("/vehicles/")
    assert _total(page) == FLEET_SIZE
    pages = [_shown_vins(page)]
    assert page.locator("nav.pager a[rel=prev]").count() == 0
    for _ in range(3):
        pages.append(_turn(page, "next"))
    # Four pages in VIN order, each one full, none repeated, none skipped.
    assert [vin for shown in pages for vin in shown] == every_vin[: 4 * PAGE]
    assert _total(page) == FLEET_SIZE
    screenshot(page, "vehicles-10k-page-4")

    # Back twice: the very pages seen before, not a shifted window.
    assert _turn(page, "prev") == pages[2]
    assert _turn(page, "prev") == pages[1]
    assert _turn(page, "next") == pages[2]


def test_filters_ten_thousand_vehicles_and_walks_every_matching_page(console, browser_page) -> None:
    _seed_fleet()
    make_user("vera", Role.VIEWER)
    page = browser_page
    log_in(page, "vera", PASSWORD)
    page.goto("/vehicles/")

    # A model: a fifth of the fleet, two pages forward and one back.
    page.get_by_label("Model", exact=True).fill("Cirrus")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state("load")
    cirrus = sorted(_vin(s) for s in range(FLEET_SIZE) if MODELS[s % len(MODELS)] == "Cirrus")
    assert _total(page) == len(cirrus) == 2000
    first = _shown_vins(page)
    second = _turn(page, "next")
    assert first + second == cirrus[: 2 * PAGE]
    assert _turn(page, "prev") == first
    assert page.get_by_label("Model", exact=True).input_value() == "Cirrus"

    # A status with 121 vehicles: every page to the last, which has no next link.
    page.goto("/vehicles/")
    page.get_by_label("Status", exact=True).select_option("decommissioned")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state("load")
    expected = sorted(_vin(s) for s in range(FLEET_SIZE) if _status(s) == "decommissioned")
    assert _total(page) == len(expected) == 121
    seen = _shown_vins(page)
    for _ in range(len(expected) // PAGE):  # bounded: three pages of 50, 50 and 21
        seen += _turn(page, "next")
    assert seen == expected
    assert len(set(seen)) == len(seen)
    assert page.locator("nav.pager a[rel=next]").count() == 0
    assert len(_shown_vins(page)) == len(expected) % PAGE
    screenshot(page, "vehicles-10k-filtered-last-page")
