"""Structured logs: JSON lines with request, vehicle and campaign ids; access logs."""

from __future__ import annotations

import json
import logging

import pytest

from core.logs import JsonFormatter, log_context
from diagnostics.tests.factories import encode, telemetry
from telematics.ingest import handle_message

pytestmark = pytest.mark.django_db

UNREGISTERED_VIN = "JH4KA8260MC000001"


def json_lines(records: list[logging.LogRecord]) -> list[dict]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(record)) for record in records]


def access_lines(caplog) -> list[dict]:
    return json_lines([r for r in caplog.records if r.name == "ota.access"])


def test_a_json_line_carries_the_context_ids_extras_and_the_exception() -> None:
    logger = logging.getLogger("ota.test")
    with log_context(vehicle_vin="WVWZZZ1JZ3W386752", campaign_id=7):
        try:
            raise ValueError("boom")
        except ValueError:
            record = logger.makeRecord(
                "ota.test", logging.ERROR, __file__, 1, "failed %s", ("x",), None
            )
            record.exc_info = __import__("sys").exc_info()
    record.attempt = 3
    [line] = json_lines([record])
    assert line["message"] == "failed x"
    assert line["level"] == "ERROR"
    assert (line["vehicle_vin"], line["campaign_id"], line["attempt"]) == (
        "WVWZZZ1JZ3W386752",
        7,
        3,
    )
    assert "ValueError: boom" in line["exception"]
    assert "request_id" not in line


def test_ids_do_not_outlive_their_block() -> None:
    with log_context(vehicle_vin="WVWZZZ1JZ3W386752"):
        pass
    record = logging.getLogger("ota.test").makeRecord("ota.test", 20, "", 1, "m", (), None)
    assert "vehicle_vin" not in json_lines([record])[0]


def test_every_request_has_one_access_line_with_its_request_id(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ota.access")
    response = client.get("/healthz", HTTP_X_REQUEST_ID="lb-1234")
    assert response["X-Request-ID"] == "lb-1234"
    [line] = access_lines(caplog)
    assert line["request_id"] == "lb-1234"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz", 200)
    assert line["duration_ms"] >= 0


def test_a_request_id_that_is_not_one_is_replaced(client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ota.access")
    response = client.get("/healthz", HTTP_X_REQUEST_ID='x" injected\n{')
    assert len(response["X-Request-ID"]) == 32
    [line] = access_lines(caplog)
    assert line["request_id"] == response["X-Request-ID"]


def test_a_vehicle_request_names_the_vehicle(vehicle_client, vehicle, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ota.access")
    vehicle_client.post("/api/v1/ota/check", {}, format="json")
    [line] = access_lines(caplog)
    assert line["vehicle_vin"] == vehicle.vin
    assert line["status"] == 200


def test_a_campaign_page_names_the_campaign(operator_client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ota.access")
    operator_client.get("/api/v1/campaigns/424242")
    [line] = access_lines(caplog)
    assert line["campaign_id"] == 424242
    assert line["status"] == 404


def test_mqtt_ingest_lines_name_the_vehicle(registry, caplog) -> None:
    outcome = handle_message(
        f"vehicle/{UNREGISTERED_VIN}/telemetry", encode(telemetry(UNREGISTERED_VIN))
    )
    assert outcome == "dropped:unknown_vehicle"
    [line] = json_lines([r for r in caplog.records if "mqtt dropped" in r.getMessage()])
    assert line["vehicle_vin"] == UNREGISTERED_VIN


@pytest.mark.slow
def test_settings_switch_the_handler_to_json(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    env = {"OTA_LOG_FORMAT": "json", "OTA_VAR_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('ota.test').warning('hello %s', 'there')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env={**env, "DJANGO_SETTINGS_MODULE": "otaproject.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert (line["logger"], line["message"]) == ("ota.test", "hello there")
