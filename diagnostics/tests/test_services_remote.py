from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.api import DomainError, NotFoundError
from core.models import AuditEvent
from diagnostics.models import DiagnosticRequest, DiagnosticResult
from diagnostics.services import (
    expire_overdue,
    record_diagnostic_response,
    send_diagnostic_request,
    settle_if_overdue,
)
from diagnostics.services.remote import ForbiddenError
from diagnostics.tests.factories import diagnostics_response

pytestmark = pytest.mark.django_db

READ_VIN = {"dids": [0xF190]}


def _zone_request(vehicle, user, **kwargs):
    return send_diagnostic_request(
        vehicle=vehicle,
        service=0x22,
        params=READ_VIN,
        zone="ZGW_FRONT",
        requested_by=user,
        **kwargs,
    )


def test_zone_request_targets_every_ecu_behind_the_gateway_and_is_relayed_after_commit(
    vehicle, fleet_operator, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        request = _zone_request(vehicle, fleet_operator)
    zone_ecus = set(
        vehicle.ecus.filter(zonal_gateway__gateway_id="ZGW_FRONT").values_list("ecu_id", flat=True)
    )
    assert {r.ecu.ecu_id for r in request.results.all()} == zone_ecus
    (message,) = published.to(f"{vehicle.vin}/diagnostics")
    assert message.qos == 1
    assert message.document["request_id"] == str(request.request_id)
    assert message.document["request_hex"] == "22f190"
    assert {t["ecu_id"] for t in message.document["targets"]} == zone_ecus


def test_nothing_is_published_when_the_transaction_does_not_commit(
    vehicle, fleet_operator, published
):
    _zone_request(vehicle, fleet_operator)
    assert published.messages == []


def test_answers_and_silence_aggregate_to_partial(vehicle, fleet_operator):
    request = _zone_request(vehicle, fleet_operator, timeout_ms=500)
    ecus = [r.ecu.ecu_id for r in request.results.order_by("ecu__ecu_id")]
    record_diagnostic_response(
        vehicle=vehicle,
        response=diagnostics_response(
            vehicle.vin,
            request.request_id,
            [
                {"ecu_id": ecus[0], "response_hex": "62f190" + b"WVWZZZ1JZ3W386752".hex()},
                {"ecu_id": ecus[1], "response_hex": "7f2231"},
            ],
        ),
    )
    request.refresh_from_db()
    assert request.status == "sent"
    expire_overdue(now=timezone.now() + timedelta(seconds=5))
    request.refresh_from_db()
    assert request.status == "partial"
    assert request.duration_ms is not None
    outcomes = {r.ecu.ecu_id: r for r in request.results.all()}
    assert outcomes[ecus[0]].outcome == "positive"
    assert outcomes[ecus[0]].decoded["text"] == "WVWZZZ1JZ3W386752"
    assert (outcomes[ecus[1]].outcome, outcomes[ecus[1]].nrc_name) == (
        "negative",
        "RequestOutOfRange",
    )
    assert {outcomes[e].outcome for e in ecus[2:]} == {"timeout"}


def test_every_ecu_answering_completes_the_request(vehicle, fleet_operator):
    request = send_diagnostic_request(
        vehicle=vehicle, service=0x3E, ecu_id="ECU_001", requested_by=fleet_operator
    )
    record_diagnostic_response(
        vehicle=vehicle,
        response=diagnostics_response(
            vehicle.vin, request.request_id, [{"ecu_id": "ECU_001", "response_hex": "7e00"}]
        ),
    )
    request.refresh_from_db()
    assert request.status == "completed"
    assert request.completed_at is not None


def test_no_answer_at_all_times_out(vehicle, fleet_operator):
    request = _zone_request(vehicle, fleet_operator, timeout_ms=100)
    request.deadline_at = timezone.now() - timedelta(seconds=1)
    request.save(update_fields=["deadline_at"])
    settle_if_overdue(request=request)
    assert request.status == "timed_out"
    assert set(request.results.values_list("outcome", flat=True)) == {"timeout"}


def test_late_or_repeated_answers_change_nothing(vehicle, fleet_operator):
    request = send_diagnostic_request(
        vehicle=vehicle, service=0x3E, ecu_id="ECU_001", requested_by=fleet_operator
    )
    answer = diagnostics_response(
        vehicle.vin, request.request_id, [{"ecu_id": "ECU_001", "response_hex": "7e00"}]
    )
    record_diagnostic_response(vehicle=vehicle, response=answer)
    answer["results"][0]["response_hex"] = "7f3e12"
    record_diagnostic_response(vehicle=vehicle, response=answer)
    assert DiagnosticResult.objects.get(request=request).outcome == "positive"


def test_an_answer_that_does_not_decode_changes_nothing(vehicle, fleet_operator):
    request = send_diagnostic_request(
        vehicle=vehicle, service=0x3E, ecu_id="ECU_001", requested_by=fleet_operator
    )
    with pytest.raises(DomainError) as caught:
        record_diagnostic_response(
            vehicle=vehicle,
            response=diagnostics_response(
                vehicle.vin, request.request_id, [{"ecu_id": "ECU_001", "response_hex": "62f190"}]
            ),
        )
    assert caught.value.field == "results[0].response_hex"
    assert DiagnosticResult.objects.get(request=request).outcome == "pending"


def test_answer_for_an_ecu_outside_the_request_changes_nothing(vehicle, fleet_operator):
    request = send_diagnostic_request(
        vehicle=vehicle, service=0x3E, ecu_id="ECU_001", requested_by=fleet_operator
    )
    with pytest.raises(DomainError):
        record_diagnostic_response(
            vehicle=vehicle,
            response=diagnostics_response(
                vehicle.vin,
                request.request_id,
                [
                    {"ecu_id": "ECU_001", "response_hex": "7e00"},
                    {"ecu_id": "ECU_050", "response_hex": "7e00"},
                ],
            ),
        )
    assert DiagnosticResult.objects.get(request=request).outcome == "pending"


def test_another_vehicle_cannot_answer(vehicle, other_vehicle, fleet_operator):
    request = send_diagnostic_request(
        vehicle=vehicle, service=0x3E, ecu_id="ECU_001", requested_by=fleet_operator
    )
    with pytest.raises(NotFoundError):
        record_diagnostic_response(
            vehicle=other_vehicle,
            response=diagnostics_response(
                other_vehicle.vin,
                request.request_id,
                [{"ecu_id": "ECU_001", "response_hex": "7e00"}],
            ),
        )


@pytest.mark.parametrize(
    ("service", "params"),
    [
        (0x2E, {"did": 0xF190, "data_hex": "00"}),
        (0x31, {"control_type": 1, "routine_id": 0xF001}),
        (0x11, {"reset_type": 1}),
        (0x14, {}),
    ],
)
def test_ecu_changing_services_need_the_operator_role(vehicle, fleet_engineer, service, params):
    with pytest.raises(ForbiddenError):
        send_diagnostic_request(
            vehicle=vehicle,
            service=service,
            params=params,
            ecu_id="ECU_001",
            requested_by=fleet_engineer,
        )
    assert not DiagnosticRequest.objects.exists()


def test_ecu_changing_request_is_audited(vehicle, fleet_operator):
    request = send_diagnostic_request(
        vehicle=vehicle,
        service=0x11,
        params={"reset_type": "softReset"},
        ecu_id="ECU_001",
        requested_by=fleet_operator,
    )
    event = AuditEvent.objects.get(action="diagnostics.sent")
    assert event.actor == fleet_operator
    assert event.object_id == str(request.request_id)
    assert event.details["changes_ecu"] is True
    assert event.details["request_hex"] == "1103"


def test_viewer_cannot_send_even_a_read(vehicle, viewer):
    with pytest.raises(ForbiddenError):
        _zone_request(vehicle, viewer)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ecu_id": "ECU_999"}, "ecu_id"),
        ({"zone": "ZGW_NOWHERE"}, "zone"),
        ({"ecu_id": "ECU_001", "zone": "ZGW_FRONT"}, "ecu_id"),
        ({}, "ecu_id"),
        ({"ecu_id": "ECU_001", "timeout_ms": 10}, "timeout_ms"),
    ],
)
def test_bad_targets_are_refused_and_store_nothing(vehicle, fleet_operator, kwargs, field):
    with pytest.raises(DomainError) as caught:
        send_diagnostic_request(
            vehicle=vehicle, service=0x3E, requested_by=fleet_operator, **kwargs
        )
    assert caught.value.field == field
    assert not DiagnosticRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="diagnostics.sent").exists()


def test_results_stream_to_the_request_group(
    vehicle, fleet_operator, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr("core.events._send", lambda group, event: sent.append((group, event)))
    request = send_diagnostic_request(
        vehicle=vehicle, service=0x3E, ecu_id="ECU_001", requested_by=fleet_operator
    )
    with django_capture_on_commit_callbacks(execute=True):
        record_diagnostic_response(
            vehicle=vehicle,
            response=diagnostics_response(
                vehicle.vin, request.request_id, [{"ecu_id": "ECU_001", "response_hex": "7e00"}]
            ),
        )
    group = f"diagnostics.{request.request_id}"
    kinds = [event["kind"] for g, event in sent if g == group]
    assert kinds == ["diagnostics_result", "diagnostics_status"]
