"""Accessibility of the console and the main admin pages: axe-core on every page at a phone and
a laptop width, no sideways scrolling, and keyboard-only walks of the pages operators act on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from console.tests.browser.conftest import log_in, wait_until_live
from console.tests.browser.fleet_data import PASSWORD, VINS, build_fleet, give_telemetry, make_user
from core.roles import Role

pytestmark = pytest.mark.slow

# Installed by `npm ci` (scripts/test) from the pinned package.json.
AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = (375, 1366)


def _axe_source() -> str:
    if not AXE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{AXE} is missing: scripts/test should have run npm ci")
        # Without npm (a fresh machine without Node.js) scripts/test cannot install it.
        pytest.skip("axe-core is missing: run npm ci (scripts/test does when npm exists)")
    return AXE.read_text()


def _violations(page: Any, axe: str) -> list[str]:
    """axe-core's findings on the page as one readable line per offending element."""
    # Evaluated through the DevTools protocol, which the page's CSP does not govern.
    page.evaluate(axe)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {node['target']} {v['help']}"
        for v in result["violations"]
        for node in v["nodes"]
    ]


def _sideways_overflow(page: Any) -> list[str]:
    """The elements that stick out of the viewport's right edge outside a scroll container."""
    return page.evaluate(
        """() => {
          const found = [];
          const scrolls = (el) => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
          document.querySelectorAll('body *').forEach((el) => {
            const over = el.getBoundingClientRect().right - document.documentElement.clientWidth;
            if (over <= 1) return;
            for (let up = el.parentElement; up; up = up.parentElement) {
              if (scrolls(up)) return;
            }
            const parent = el.parentElement;
            if (parent && parent.getBoundingClientRect().right - window.innerWidth > 1) return;
            found.push(`${el.tagName.toLowerCase()}.${el.className} sticks out by ${Math.round(over)} px`);
          });
          return found;
        }"""
    )


def _cut_tables(page: Any) -> list[str]:
    """Tables wider than their box at a laptop width: the reader has to scroll to see them."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('table'))
          .map((table) => [table, table.parentElement])
          .filter(([table, box]) => table.getBoundingClientRect().width > box.clientWidth + 1)
          .map(([table, box]) => `table in ${box.tagName.toLowerCase()}#${box.id}.${box.className}`
            + ` is ${Math.round(table.getBoundingClientRect().width)} px in ${box.clientWidth} px`)"""
    )


def _fleet_with_a_campaign() -> Any:
    from console.tests.dashboard_helpers import make_campaign, make_firmware, make_update

    vehicles = build_fleet()
    give_telemetry(vehicles[0])
    firmware = make_firmware()
    campaign = make_campaign(name="ECM 9.0.0 to the pilot cars", status="running")
    campaign.firmware.add(firmware)
    make_update(campaign, vehicles[0], state="downloading", progress_percent=40)
    make_update(campaign, vehicles[1], state="failed", error="battery below 50 %")
    return campaign


def test_every_page_has_no_axe_violations_and_no_sideways_scroll(console, browser_page) -> None:
    from firmware.models import Firmware

    axe = _axe_source()
    campaign = _fleet_with_a_campaign()
    make_user("ada", superuser=True)
    page = browser_page
    log_in(page, "ada", PASSWORD)
    pages = [
        "/",
        "/campaigns/",
        f"/campaigns/{campaign.pk}/",
        "/vehicles/",
        f"/vehicles/{VINS[0]}/",
        "/diagnostics/",
        f"/diagnostics/?vehicle={VINS[0]}",
        "/pqc/",
        "/reports/versions/",
        "/admin/",
        "/admin/ota/campaign/",
        f"/admin/ota/campaign/{campaign.pk}/change/",
        "/admin/vehicles/vehicle/",
        "/admin/firmware/firmware/",
        f"/admin/firmware/firmware/{Firmware.objects.get().pk}/change/",
        "/admin/firmware/firmware/upload/",
        "/admin/ecus/ecutype/",
        "/admin/ecus/ecu/",
        f"/admin/vehicles/vehicle/{campaign.updates.first().vehicle_id}/change/",
        "/admin/ota/otaupdate/",
        "/admin/core/auditevent/",
        "/admin/diagnostics/telemetrylatest/",
        "/admin/auth/user/",
    ]
    found: dict[str, list[str]] = {}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for path in pages:
            response = page.goto(path)
            assert response is not None and response.status == 200, path
            problems = _violations(page, axe)
            problems += _sideways_overflow(page)
            if width >= 1366:
                problems += _cut_tables(page)
            if problems:
                found[f"{path} at {width} px"] = problems
    page.context.clear_cookies()
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for path in ("/accounts/login/", "/admin/login/"):
            page.goto(path)
            if problems := _violations(page, axe) + _sideways_overflow(page):
                found[f"{path} at {width} px"] = problems
    assert not found, "\n".join(
        f"{where}: {what}" for where, all_ in found.items() for what in all_
    )


def _tab_to(page: Any, selector: str, *, limit: int = 80) -> None:
    """Press Tab until the element matching `selector` has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} was not reached within {limit} Tab presses")


def _focused(page: Any) -> str:
    return page.evaluate(
        "() => document.activeElement.outerHTML.slice(0, 120) || document.activeElement.tagName"
    )


def test_keyboard_walk_of_the_campaign_page_keeps_focus_through_live_refresh(
    console, browser_page
) -> None:
    from ota.campaigns import publish_campaign_progress
    from ota.choices import CampaignStatus

    campaign = _fleet_with_a_campaign()
    make_user("olga", Role.OPERATOR)
    page = browser_page
    log_in(page, "olga", PASSWORD)
    page.goto(f"/campaigns/{campaign.pk}/")
    wait_until_live(page)

    _tab_to(page, "button[data-action=cancel]")
    assert page.locator("#live-region").get_attribute("data-refreshed-at") is None
    console.call_on_server(publish_campaign_progress, campaign_id=campaign.pk)
    page.locator("#live-region[data-refreshed-at]").wait_for(state="attached")
    assert page.evaluate("document.activeElement.dataset.action") == "cancel", _focused(page)

    # Cancel asks first; declining leaves the campaign running and the focus on the button.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.dataset.action") == "cancel", _focused(page)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING

    page.once("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("Enter")
    page.locator("[data-campaign-status]", has_text="Cancelled").wait_for()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED


def test_keyboard_walk_of_the_diagnostics_console(console, browser_page) -> None:
    build_fleet()
    make_user("olga", Role.OPERATOR)
    page = browser_page
    log_in(page, "olga", PASSWORD)
    page.goto("/diagnostics/")
    page.evaluate("window.pageIdentity = 'no reload while choosing'")

    # Arrow keys move through the vehicles without submitting; Enter on Open does.
    _tab_to(page, "#pick-vehicle")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("window.pageIdentity") == "no reload while choosing"
    assert page.evaluate("document.activeElement.id") == "pick-vehicle"
    chosen = page.evaluate("document.activeElement.value")
    assert chosen in VINS
    _tab_to(page, "#pick-vehicle ~ button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/diagnostics/?vehicle={chosen}")

    _tab_to(page, "#id_target")
    _tab_to(page, "#id_service")
    _tab_to(page, "#id_parameters")
    page.keyboard.press("Control+A")
    page.keyboard.type("F190")
    _tab_to(page, "#uds-form button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url("**/diagnostics/requests/*/")
    wait_until_live(page)
