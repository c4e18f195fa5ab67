"""The console and the API docs in Chromium under the Content-Security-Policy."""

from __future__ import annotations

import pytest

from console.tests.browser.conftest import log_in, wait_until_live
from console.tests.browser.fleet_data import PASSWORD, build_fleet, make_user
from core.roles import Role

pytestmark = pytest.mark.slow


def test_chromium_runs_the_console_and_api_docs_under_the_policy(console, browser_page) -> None:
    """Over the real PQC-TLS console listener: headers arrive, and the CSP blocks nothing."""
    build_fleet()
    make_user("vera", Role.VIEWER, superuser=True)
    page = browser_page
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )

    first = page.goto("/accounts/login/")
    headers = first.all_headers()
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["strict-transport-security"].startswith("max-age=")
    assert headers["x-frame-options"] == "DENY"
    log_in(page, "vera", PASSWORD)
    wait_until_live(page)
    assert page.locator("#live-status .live-label").inner_text() != "connecting"
    for path in ("/campaigns/", "/vehicles/", "/diagnostics/", "/pqc/", "/admin/"):
        page.goto(path)
    page.goto("/api/docs/")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "PQC OTA server API" in page.locator(".swagger-ui .info .title").inner_text()
    page.locator(".opblock").first.wait_for()

    assert violations == []
