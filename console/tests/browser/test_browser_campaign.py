from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings

from console.tests.browser.conftest import log_in, screenshot, wait_until_live
from console.tests.browser.fleet_data import PASSWORD, VINS, build_fleet, make_user

pytestmark = pytest.mark.slow


def _vehicle_reports(console, vin: str, report: dict) -> dict:
    """The vehicle posts a status report over its own mutual-TLS listener, as a VMG does."""
    from pqc.client import ClientCredentials, https_request
    from pqc.pki import FleetPki

    pki = FleetPki(Path(settings.PKI_DIR) / "browser")
    bundle = pki.write_vehicle_bundle(
        pki.issue_vehicle(vin=vin, family="ecdsa-p256"), Path(settings.PKI_DIR) / "browser" / vin
    )
    response = https_request(
        "127.0.0.1",
        console.ports["vehicle"],
        "POST",
        "/api/v1/ota/status",
        json=report,
        credentials=ClientCredentials(ca=bundle.ca_bundle, cert=bundle.cert, key=bundle.key),
        server_hostname="localhost",
    )
    assert response.status == 200, response.body
    return json.loads(response.body)


def test_operator_uploads_firmware_runs_a_campaign_and_watches_it_live(
    console, browser_page
) -> None:
    from ota.engine import run_tick
    from ota.models import Campaign, OtaUpdate

    build_fleet()
    make_user("ada", superuser=True)
    page = browser_page
    log_in(page, "ada", PASSWORD)

    # A fleet engineer uploads a release in the admin (the firmware owner's page).
    page.goto("/admin/firmware/firmware/upload/")
    page.select_option("#id_ecu_type", "ECM")
    page.fill("#id_version", "9.0.0")
    page.fill("#id_hardware_versions", "2.0, 2.1")
    page.set_input_files(
        "#id_file",
        {
            "name": "ecm-9.0.0.bin",
            "mimeType": "application/octet-stream",
            "buffer": b"\x7fECM" * 4096,
        },
    )
    page.click("input[type=submit]")
    page.locator("#upload-status", has_text=re.compile(r"^Stored ECM 9\.0\.0")).wait_for()
    screenshot(page, "02-firmware-upload")

    # An operator creates the campaign on the dashboard and starts it.
    page.goto("/campaigns/")
    page.get_by_label("Name").fill("ECM 9.0.0 to the pilot cars")
    page.get_by_label("Firmware releases").select_option(label="ECM 9.0.0")
    page.get_by_label("Vehicle VINs").fill(f"{VINS[0]}\n{VINS[1]}")
    page.get_by_label("Waves (% of vehicles, cumulative)").fill("100")
    page.get_by_role("button", name="Create campaign").click()
    page.wait_for_url("**/campaigns/*/")
    campaign = Campaign.objects.get()
    page.get_by_role("button", name="Start").click()
    page.wait_for_load_state()
    assert page.locator("[data-campaign-status]").inner_text() == "Scheduled"
    wait_until_live(page)
    page.evaluate("window.pageIdentity = 'no reload since start'")

    # The campaign worker offers the update; the page follows without a reload.
    console.call_on_server(run_tick)
    row = page.locator(f"tr[data-vin='{VINS[0]}']")
    row.wait_for()
    assert page.locator("[data-campaign-status]").inner_text() == "Running"
    assert page.locator("[data-kpi=total]").inner_text() == "2"

    # A vehicle reports progress over its own mutual-TLS listener.
    update = OtaUpdate.objects.get(campaign=campaign, vehicle__vin=VINS[0])
    _vehicle_reports(
        console,
        VINS[0],
        {"update_id": update.pk, "vmg_state": 1, "percentage": 40, "current_step": "zone 1 of 2"},
    )
    page.locator(f"tr[data-vin='{VINS[0]}'] [data-state=downloading]").wait_for()
    assert page.locator("[data-kpi=in_progress]").inner_text() == "1"
    assert "zone 1 of 2" in page.locator(f"tr[data-vin='{VINS[0]}']").inner_text()

    other = OtaUpdate.objects.get(campaign=campaign, vehicle__vin=VINS[1])
    _vehicle_reports(
        console,
        VINS[1],
        {"update_id": other.pk, "vmg_state": 5, "error": "battery below 50 %"},
    )
    page.locator(f"tr[data-vin='{VINS[1]}'] [data-state=failed]").wait_for()
    assert page.locator("[data-kpi=failed]").inner_text() == "1"
    assert page.evaluate("window.pageIdentity") == "no reload since start"
    assert page.locator("#live-feed li").count() >= 2
    # Every time on the console is 24-hour UTC, the feed's too (not the browser's "1:05:09 PM").
    for shown in page.locator("#live-feed li time").all_inner_texts():
        assert re.fullmatch(r"\d\d:\d\d:\d\d", shown), shown
    screenshot(page, "04-campaign-live")

    page.goto("/campaigns/")
    assert page.get_by_role("link", name="ECM 9.0.0 to the pilot cars").is_visible()
    screenshot(page, "04-campaigns")

    page.goto("/")
    wait_until_live(page)
    assert page.locator("[data-kpi=campaigns]").inner_text() == "1"
    screenshot(page, "01-fleet-with-campaign")
