from __future__ import annotations

import pytest

from console.tests.browser.conftest import log_in, screenshot, wait_until_live
from console.tests.browser.fleet_data import PASSWORD, VINS, build_fleet, give_telemetry, make_user
from core.roles import Role

pytestmark = pytest.mark.slow


def test_every_page_renders_live_data_in_chromium(console, browser_page) -> None:
    vehicles = build_fleet()
    give_telemetry(vehicles[0])
    make_user("vera", Role.VIEWER)
    page = browser_page

    log_in(page, "vera", PASSWORD)
    wait_until_live(page)
    assert page.locator("[data-kpi=total]").inner_text() == str(len(VINS))
    assert page.locator("[data-kpi=online]").inner_text() == "2"
    assert page.locator("svg.adoption-chart g").count() > 10
    screenshot(page, "01-fleet")

    page.get_by_role("link", name="Vehicles", exact=True).click()
    assert page.locator("tbody tr").count() == len(VINS)
    screenshot(page, "03-vehicles")
    page.get_by_role("link", name=VINS[0]).click()
    wait_until_live(page)
    assert page.get_by_text("ML-KEM-768 + ECDSA-P256").is_visible()
    assert page.get_by_text("Battery percent").is_visible()
    assert page.locator("details.zone").count() == 6
    screenshot(page, "03-vehicle-detail")

    page.get_by_role("link", name="PQC", exact=True).click()
    wait_until_live(page)
    row = page.locator("tr", has_text="ML-KEM-768 + ML-DSA-65").first
    assert "1" in row.locator("td.usage strong").inner_text()
    screenshot(page, "05-pqc")

    # The same overview on a phone-sized screen: navigation wraps, cards stack.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    assert page.locator(".kpi").first.bounding_box()["width"] < 390
    screenshot(page, "08-fleet-phone")


def test_logged_out_browser_is_sent_to_login(console, browser_page) -> None:
    browser_page.goto("/campaigns/")
    assert "/accounts/login/" in browser_page.url
    assert browser_page.get_by_role("heading", name="Sign in").is_visible()
    screenshot(browser_page, "00-login")
