from __future__ import annotations

import json
import time

import pytest

from console.tests.browser.conftest import log_in, screenshot, wait_until_live
from console.tests.browser.fleet_data import PASSWORD, VINS, build_fleet, make_user
from core.roles import Role

pytestmark = pytest.mark.slow


def _wait_for_publish(recorder, suffix: str, *, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        messages = recorder.to(suffix)
        if messages:
            return messages[-1].document
        time.sleep(0.05)
    raise AssertionError(f"nothing was published to */{suffix}")


def test_operator_sends_a_uds_request_and_watches_answers_arrive(console, browser_page) -> None:
    from core.mqtt.testing import recording_publisher
    from telematics.ingest import handle_message

    vin = VINS[0]
    build_fleet()
    make_user("olga", Role.OPERATOR)
    page = browser_page
    log_in(page, "olga", PASSWORD)

    with recording_publisher() as recorder:
        page.get_by_role("link", name="Diagnostics").click()
        page.get_by_label("Vehicle", exact=True).select_option(vin)
        page.get_by_role("button", name="Open").click()
        page.wait_for_url(f"**/diagnostics/?vehicle={vin}")
        page.get_by_label("Target ECU or zone").select_option("ZGW_CHASSIS")
        page.get_by_label("UDS service").select_option(label="0x22 ReadDataByIdentifier")
        page.get_by_label("Parameters").fill("F190")
        assert page.locator("#uds-preview").inner_text() == "22 F1 90"
        screenshot(page, "06-diagnostics-console")
        page.get_by_role("button", name="Send request").click()
        page.wait_for_url("**/diagnostics/requests/*/")
        wait_until_live(page)
        page.evaluate("window.pageIdentity = 'no reload since send'")

        # The vehicle receives the request over MQTT and relays the ECUs' answers in two batches.
        request = _wait_for_publish(recorder, f"{vin}/diagnostics")
        assert request["request_hex"] == "22f190"
        ecus = [target["ecu_id"] for target in request["targets"]]
        topic = f"vehicle/{vin}/diagnostics/response"
        vin_answer = "62f190" + vin.encode().hex()
        first = {
            "request_id": request["request_id"],
            "vin": vin,
            "results": [{"ecu_id": ecu_id, "response_hex": vin_answer} for ecu_id in ecus[:3]],
        }
        assert (
            console.call_on_server(handle_message, topic=topic, payload=json.dumps(first).encode())
            == "accepted"
        )
        page.locator("tr[data-outcome=positive]").nth(2).wait_for()
        assert page.locator("tr[data-outcome=pending]").count() == len(ecus) - 3
        assert vin in page.locator(f"tr[data-ecu='{ecus[0]}']").inner_text()

        rest = {
            "request_id": request["request_id"],
            "vin": vin,
            "results": [
                {"ecu_id": ecus[3], "response_hex": "7f2231"},
                {"ecu_id": ecus[4], "error": "no_response"},
                *({"ecu_id": ecu_id, "response_hex": vin_answer} for ecu_id in ecus[5:]),
            ],
        }
        assert (
            console.call_on_server(handle_message, topic=topic, payload=json.dumps(rest).encode())
            == "accepted"
        )
        page.locator(
            "[data-diagnostic-status=partial], [data-diagnostic-status=completed]"
        ).wait_for()
        assert page.locator("tr[data-outcome=pending]").count() == 0
        assert page.locator("tr[data-outcome=negative]").count() == 1
        assert page.evaluate("window.pageIdentity") == "no reload since send"
        screenshot(page, "07-diagnostics-answers")
