from __future__ import annotations

import pytest

from core.models import AuditEvent
from diagnostics.models import DiagnosticRequest
from diagnostics.services import record_diagnostic_response
from diagnostics.tests.factories import diagnostics_response

pytestmark = pytest.mark.django_db

SEND = "/api/v1/diagnostics/send"


def _read_vin(vehicle, **overrides):
    return {
        "vin": vehicle.vin,
        "zone": "ZGW_FRONT",
        "service": "0x22",
        "params": {"dids": [0xF190]},
        **overrides,
    }


def test_operator_sends_a_zone_request_and_reads_aggregated_results(vehicle, operator_client):
    response = operator_client.post(SEND, _read_vin(vehicle), format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "sent" and body["scope"] == "zone" and body["zone"] == "ZGW_FRONT"
    first = body["results"][0]["ecu_id"]
    record_diagnostic_response(
        vehicle=vehicle,
        response=diagnostics_response(
            vehicle.vin, body["request_id"], [{"ecu_id": first, "response_hex": "7f2222"}]
        ),
    )
    result = operator_client.get(f"/api/v1/diagnostics/results/{body['request_id']}").json()
    by_ecu = {r["ecu_id"]: r for r in result["results"]}
    assert by_ecu[first]["nrc_name"] == "ConditionsNotCorrect"
    assert result["summary"]["negative"] == 1


def test_viewer_reads_results_but_cannot_send(vehicle, operator_client, viewer_client):
    request_id = operator_client.post(SEND, _read_vin(vehicle), format="json").json()["request_id"]
    assert viewer_client.post(SEND, _read_vin(vehicle), format="json").status_code == 403
    assert viewer_client.get(f"/api/v1/diagnostics/results/{request_id}").status_code == 200
    assert DiagnosticRequest.objects.count() == 1


def test_engineer_may_read_but_not_reset_an_ecu(vehicle, engineer_client):
    assert engineer_client.post(SEND, _read_vin(vehicle), format="json").status_code == 202
    reset = {
        "vin": vehicle.vin,
        "ecu_id": "ECU_001",
        "service": "0x11",
        "params": {"reset_type": 1},
    }
    response = engineer_client.post(SEND, reset, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["fields"] == {"service": [response.json()["error"]["message"]]}
    assert DiagnosticRequest.objects.count() == 1


def test_operator_reset_is_audited(vehicle, operator_client, fleet_operator):
    reset = {
        "vin": vehicle.vin,
        "ecu_id": "ECU_001",
        "service": "ECUReset",
        "params": {"reset_type": "hardReset"},
    }
    assert operator_client.post(SEND, reset, format="json").status_code == 202
    assert AuditEvent.objects.get(action="diagnostics.sent").actor == fleet_operator


def test_vehicle_cannot_use_the_console(vehicle, vehicle_client):
    assert vehicle_client.post(SEND, _read_vin(vehicle), format="json").status_code == 403


def test_anonymous_is_refused(vehicle, client):
    assert client.post(SEND, _read_vin(vehicle), content_type="application/json").status_code in (
        401,
        403,
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"params": {"dids": [0x12345]}}, "params.dids[0]"),
        ({"service": "0x34"}, "service"),
        ({"zone": "ZGW_NOWHERE"}, "zone"),
        ({"vin": "5YJ3E1EA7KF317000"}, "vin"),
        ({"timeout_ms": 5}, "timeout_ms"),
        ({"ecu_id": "ECU_001"}, "ecu_id"),
        ({"params": "f190"}, "params"),
    ],
)
def test_bad_requests_name_the_field_and_store_nothing(vehicle, operator_client, overrides, field):
    # Setting up the fleet (the registry import) is audited too: only new events count.
    events_before = AuditEvent.objects.count()
    response = operator_client.post(SEND, _read_vin(vehicle, **overrides), format="json")
    assert 400 <= response.status_code < 500
    assert field in response.json()["error"]["fields"], response.json()
    assert not DiagnosticRequest.objects.exists()
    assert AuditEvent.objects.count() == events_before


def test_unknown_request_is_404(operator_client, db):
    response = operator_client.get(
        "/api/v1/diagnostics/results/4f0b7d0e-9a55-4a56-9d1e-8c3b6c0a1f00"
    )
    assert response.status_code == 404


def test_results_query_count_does_not_grow_with_zone_size(
    vehicle, operator_client, django_assert_max_num_queries
):
    request_id = operator_client.post(SEND, _read_vin(vehicle), format="json").json()["request_id"]
    with django_assert_max_num_queries(8):
        operator_client.get(f"/api/v1/diagnostics/results/{request_id}")
