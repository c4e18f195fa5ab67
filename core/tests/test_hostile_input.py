"""Hostile input to the REST API gets a 4xx with the JSON error shape, never a 500."""

from __future__ import annotations

import json

import pytest

from conftest import api_client_for
from core.jsonlimits import MAX_JSON_DEPTH
from core.models import AuditEvent
from ota.models import Campaign, OtaUpdate, UpdateReport
from ota.tests import conftest as ota_fixtures

# The OTA app's fixtures (an offered update and what it needs), shared with these tests.
ecm_release = ota_fixtures.ecm_release
fake_packages = ota_fixtures.fake_packages
offered_update = ota_fixtures.offered_update
published = ota_fixtures.published

pytestmark = pytest.mark.django_db


def _error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    return response.json()["error"]


def _nested(depth: int) -> bytes:
    return b'{"update_id": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 30_000])
def test_deeply_nested_status_report_is_refused_naming_the_body(vehicle_client, vehicle, depth):
    response = vehicle_client.post(
        "/api/v1/ota/status", _nested(depth), content_type="application/json"
    )
    error = _error(response, 400)
    assert error["code"] == "too_deep"
    assert "32" in error["fields"]["body"][0]


def test_deeply_nested_vci_is_refused_and_stores_nothing(vehicle_client, vehicle):
    response = vehicle_client.post(
        f"/api/v1/vehicles/{vehicle.vin}/vci", _nested(30_000), content_type="application/json"
    )
    assert _error(response, 400)["fields"]["body"]
    assert not vehicle.vci_snapshots.exists()


def test_nesting_up_to_the_limit_still_parses(vehicle_client, vehicle):
    # Refused by the status service for its content, not by the parser.
    body = b'{"running_versions": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1)
    response = vehicle_client.post(
        "/api/v1/ota/status", body + b"}", content_type="application/json"
    )
    assert _error(response, 400)["code"] != "too_deep"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_not_json(operator_client, number):
    body = f'{{"name": "x", "firmware_ids": [1], "success_threshold": {number}}}'
    response = operator_client.post("/api/v1/campaigns", body, content_type="application/json")
    assert _error(response, 400)["fields"]["body"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("sequence", 2**80), ("sequence", 2**63), ("update_id", 2**63), ("percentage", 2**80)],
)
def test_status_report_integers_beyond_the_database_are_refused(
    vehicle_client, offered_update, field, value
):
    response = vehicle_client.post(
        "/api/v1/ota/status",
        {"update_id": offered_update.pk, "report_id": "r-1", field: value},
        format="json",
    )
    assert field in _error(response, 400)["fields"]
    assert not UpdateReport.objects.exists()
    offered_update.refresh_from_db()
    assert offered_update.state == "offered"


def test_the_largest_sequence_the_database_holds_is_accepted(vehicle_client, offered_update):
    response = vehicle_client.post(
        "/api/v1/ota/status",
        {"update_id": offered_update.pk, "sequence": 2**63 - 1, "vmg_state": 1},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert OtaUpdate.objects.get().last_sequence == 2**63 - 1


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "firmware_ids": [2**63]},
        {"name": "x", "firmware_ids": [2**80]},
        {"name": "x", "firmware_ids": [1], "target_model_years": [2**80]},
        {"name": "x", "firmware_ids": [1], "retry_backoff_seconds": 2**80},
    ],
)
def test_campaign_integers_beyond_the_database_are_refused(operator_client, body):
    response = operator_client.post("/api/v1/campaigns", body, format="json")
    fields = _error(response, 400)["fields"]
    assert set(fields) & set(body) - {"name"}
    assert not Campaign.objects.exists()


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/ota/package", {"update_id": 2**80}, "update_id"),
        ("/api/v1/diagnostics/control", {"command": "collect_vci", "campaign_id": 2**80}, None),
    ],
)
def test_ids_beyond_the_database_are_refused(
    vehicle_client, operator_client, vehicle, url, body, field
):
    client = vehicle_client if url.startswith("/api/v1/ota") else operator_client
    response = client.post(url, body, format="json")
    fields = _error(response, 400)["fields"]
    assert (field or "campaign_id") in fields


@pytest.mark.parametrize(
    "body", [[1, 2], "text", 7, None, True], ids=["list", "string", "number", "null", "bool"]
)
def test_update_check_refuses_a_body_that_is_not_an_object(vehicle_client, vehicle, body):
    response = vehicle_client.post(
        "/api/v1/ota/check", json.dumps(body), content_type="application/json"
    )
    assert _error(response, 400)["fields"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=10000000000000000000000000000", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("offset=abc", "offset"),
        ("offset=-5", "offset"),
        ("offset=99999999999999999999999", "offset"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/campaigns", "/api/v1/audit-events", "/api/v1/vehicles"])
def test_pagination_parameters_out_of_bounds_are_refused(viewer_client, path, query, field):
    response = viewer_client.get(f"{path}?{query}")
    assert field in _error(response, 400)["fields"]


def test_pagination_at_its_bounds_answers(viewer_client, vehicle):
    response = viewer_client.get("/api/v1/vehicles?limit=1000")
    assert response.status_code == 200
    assert response.json()["count"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=2026-13-45T99:00:00", "since"),
        ("until=2026-02-30T10:00:00Z", "until"),
        ("since=not-a-time", "since"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/audit-events", "/api/v1/audit-events/export"])
def test_audit_filters_with_impossible_times_are_refused(viewer_client, path, query, field):
    AuditEvent.objects.all().delete()
    response = viewer_client.get(f"{path}?{query}")
    assert field in _error(response, 400)["fields"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("model_year=abc", "model_year"),
        ("model_year=99999999999999999999999", "model_year"),
        ("status=flying", "status"),
    ],
)
def test_vehicle_list_filters_are_checked(viewer_client, vehicle, query, field):
    response = viewer_client.get(f"/api/v1/vehicles?{query}")
    assert field in _error(response, 400)["fields"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/campaigns/99999999999999999999999",
        "/api/v1/campaigns/99999999999999999999999/vehicles",
        "/api/v1/campaigns/abc",
    ],
)
def test_ids_in_paths_beyond_the_database_are_not_found(viewer_client, path):
    assert _error(viewer_client.get(path), 404)["code"] == "not_found"


@pytest.mark.parametrize(
    "path", ["/api/v1/anything-unknown", "/api/v1/", "/api/v1/campaigns/1/unknown", "/api/v2/x"]
)
def test_unknown_api_paths_answer_the_json_404(viewer_client, path):
    error = _error(viewer_client.get(path), 404)
    assert error["code"] == "not_found"
    assert error["fields"] == {}


def test_unknown_api_paths_answer_404_to_anonymous_callers_too(client):
    assert _error(client.post("/api/v1/anything-unknown"), 404)["code"] == "not_found"


@pytest.mark.parametrize("query", ["limit=abc", "limit=-3", "limit=5000"])
def test_telemetry_history_limit_is_checked(viewer_client, vehicle, query):
    response = api_client_for(None).get(f"/api/v1/diagnostics/telemetry/{vehicle.vin}")
    assert response.status_code in (401, 403)
    response = viewer_client.get(f"/api/v1/diagnostics/telemetry/{vehicle.vin}?{query}")
    assert "limit" in _error(response, 400)["fields"]


def test_an_unknown_format_is_a_400_naming_format(viewer_client):
    error = _error(viewer_client.get("/api/v1/audit-events/export?format=xml"), 400)
    assert "format" in error["fields"]


def test_a_form_body_with_too_many_fields_gets_the_json_error(operator_client):
    body = {"name": "x", "firmware_ids": [1], "target_vins": ["V"] * 1500}
    response = operator_client.post("/api/v1/campaigns", body, format="multipart")
    assert _error(response, 400)["fields"]["body"]
    assert not Campaign.objects.exists()


def test_an_error_of_the_csv_export_is_json(viewer_client):
    response = viewer_client.get("/api/v1/audit-events/export?format=csv&since=yesterday")
    assert "since" in _error(response, 400)["fields"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/audit-events?vin=%00", "vin"),
        ("/api/v1/audit-events?action=a%00", "action"),
        ("/api/v1/vehicles?model_name=%00", "model_name"),
        ("/api/v1/ecus?vin=WVWZZZ1JZ3W386752&zone=%00", "zone"),
        ("/api/v1/vehicles/WVWZZZ1JZ3W386752/software-history?ecu_id=%00", "ecu_id"),
    ],
)
def test_nul_characters_in_query_parameters_are_refused(viewer_client, vehicle, path, field):
    assert field in _error(viewer_client.get(path), 400)["fields"]


@pytest.mark.parametrize("path", ["/api/v1/ecus/ECU%00", "/api/v1/vehicles/WVWZZZ1JZ3W38675%00"])
def test_nul_characters_in_paths_are_refused(viewer_client, vehicle, path):
    assert _error(viewer_client.get(f"{path}?vin={vehicle.vin}"), 400)["fields"]


def test_nul_characters_in_json_strings_are_refused(operator_client):
    body = {"name": "rollout\u0000", "firmware_ids": [1]}
    response = operator_client.post("/api/v1/campaigns", body, format="json")
    assert _error(response, 400)["fields"]
    assert not Campaign.objects.exists()


def test_nul_characters_in_json_keys_are_refused(vehicle_client, vehicle):
    body = b'{"report_id": "r", "running_versions": {"ECU\\u0000": "1.0.0"}}'
    response = vehicle_client.post("/api/v1/ota/status", body, content_type="application/json")
    assert _error(response, 400)["fields"]


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/ota/status", {"report_id": "r\u0000"}),
        ("/api/v1/ota/check", {"vin": "\u0000"}),
        (
            "/api/v1/vehicles/WVWZZZ1JZ3W386752/vci",
            {
                "vin": "WVWZZZ1JZ3W386752",
                "timestamp": 1767225600,
                "device_id": "VMG\u0000",
                "ecus": [{"ecu_id": "ECU\u0000", "sw_version": "1.0.0", "hw_version": "2.0"}],
            },
        ),
    ],
)
def test_nul_characters_in_vehicle_bodies_are_refused(vehicle_client, vehicle, url, body):
    response = vehicle_client.post(url, body, format="json")
    assert _error(response, 400)["fields"]
    assert not vehicle.vci_snapshots.exists()


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", 10**20]
)
def test_vci_timestamps_beyond_the_calendar_are_refused(vehicle_client, vehicle, timestamp):
    ecu = {"ecu_id": "ECU_001", "sw_version": "1.1.1", "hw_version": "2.0"}
    body = {"vin": vehicle.vin, "timestamp": timestamp, "ecus": [ecu]}
    response = vehicle_client.post(f"/api/v1/vehicles/{vehicle.vin}/vci", body, format="json")
    assert "timestamp" in _error(response, 400)["fields"]
