"""The admin upload page in a real browser: progress bar, stored release, field errors."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from console.tests.browser.conftest import (  # noqa: F401  (fixtures)
    browser_page,
    console,
    log_in,
    screenshot,
)
from console.tests.browser.fleet_data import PASSWORD, make_user
from core.roles import Role
from firmware.models import Firmware
from firmware.tests import factories

pytestmark = pytest.mark.slow


def test_fleet_engineer_uploads_firmware_with_a_progress_bar(
    console,  # noqa: F811
    browser_page,  # noqa: F811
    tmp_path: Path,
) -> None:
    factories.ecu_type("ECM")
    make_user("fiona", Role.FLEET_ENGINEER, superuser=True)
    image = tmp_path / "ecm app.bin"
    image.write_bytes(os.urandom(3 << 20))
    page = browser_page
    log_in(page, "fiona", PASSWORD)

    page.goto("/admin/firmware/firmware/upload/")
    page.select_option("#id_ecu_type", "ECM")
    page.fill("#id_version", "5.0.0")
    page.fill("#id_hardware_versions", "2.0, 2.1")
    page.set_input_files("#id_file", str(image))
    page.click("input[type=submit]")
    # Locator waits, not wait_for_function: the console's CSP forbids evaluating strings.
    expect(page.locator("#upload-status")).to_have_text(re.compile(r"^Stored"), timeout=30_000)
    screenshot(page, "firmware-upload")

    assert page.locator("#upload-progress").evaluate("bar => bar.value") == 100
    firmware = Firmware.objects.get(ecu_type__code="ECM", version="5.0.0")
    assert firmware.sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
    assert firmware.sha256 in page.locator("#upload-status").inner_text()
    assert firmware.original_filename == "ecm app.bin"

    # The same release again: the page shows the API's error naming the field.
    page.click("input[type=submit]")
    expect(page.locator("#upload-status")).to_have_text(re.compile(r"^409"), timeout=30_000)
    status = page.locator("#upload-status").inner_text()
    assert "version:" in status
    assert status.count("already exists") == 1, status  # said once, not as message and field
    assert Firmware.objects.filter(ecu_type__code="ECM").count() == 1
