from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework import status

from core.api import DomainError, NotFoundError
from core.audit import record_event
from core.events import diagnostics_group, publish_event, vehicle_group
from core.mqtt import topics
from core.mqtt.publisher import publish_after_commit
from core.roles import Role, has_role
from diagnostics.choices import DiagnosticScope, DiagnosticStatus, EcuOutcome
from diagnostics.models import DiagnosticRequest, DiagnosticResult
from diagnostics.services.control import expire_overdue_commands
from diagnostics.uds import UdsRequest, UndecodableResponse, build_request, decode_response
from ecus.models import Ecu
from vehicles.models import Vehicle, ZonalGateway

MIN_TIMEOUT_MS = 100
MAX_TIMEOUT_MS = 120_000
# Time the relay itself may take (broker, VMG, zonal gateway) on top of the ECU timeout.
TRANSPORT_GRACE = timedelta(seconds=1)


class ForbiddenError(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


def _check_rights(user: Any, request: UdsRequest) -> None:
    if user is None:
        return  # system callers (management commands, tests of the relay)
    if request.changes_ecu and not has_role(user, Role.OPERATOR):
        raise ForbiddenError(
            f"{request.service_name} changes the ECU: the operator role is required",
            field="service",
        )
    if not (has_role(user, Role.OPERATOR) or has_role(user, Role.FLEET_ENGINEER)):
        raise ForbiddenError("the operator or fleet_engineer role is required")


def _targets(
    vehicle: Vehicle, ecu_id: str | None, zone: str | None
) -> tuple[ZonalGateway | None, list[Ecu]]:
    if bool(ecu_id) == bool(zone):
        raise DomainError("give either ecu_id or zone", field="ecu_id")
    if ecu_id:
        ecu = (
            Ecu.objects.select_related("zonal_gateway")
            .filter(vehicle=vehicle, ecu_id=ecu_id)
            .first()
        )
        if ecu is None:
            raise NotFoundError(f"vehicle {vehicle.vin} has no ECU {ecu_id}", field="ecu_id")
        return None, [ecu]
    gateway = ZonalGateway.objects.filter(vehicle=vehicle, gateway_id=zone).first()
    if gateway is None:
        raise NotFoundError(f"vehicle {vehicle.vin} has no zone {zone}", field="zone")
    ecus = list(gateway.ecus.select_related("zonal_gateway").order_by("ecu_id"))
    if not ecus:
        raise DomainError(f"zone {zone} has no ECU behind it", field="zone")
    return gateway, ecus


@transaction.atomic(durable=True)
def send_diagnostic_request(
    *,
    vehicle: Vehicle,
    service: Any,
    params: dict[str, Any] | None = None,
    ecu_id: str | None = None,
    zone: str | None = None,
    requested_by: Any = None,
    timeout_ms: int = 5000,
) -> DiagnosticRequest:
    """Validate a UDS request, store it with one pending result per ECU and relay it after commit."""
    uds_request = build_request(service, params)
    _check_rights(requested_by, uds_request)
    if (
        isinstance(timeout_ms, bool)
        or not isinstance(timeout_ms, int)
        or not (MIN_TIMEOUT_MS <= timeout_ms <= MAX_TIMEOUT_MS)
    ):
        raise DomainError(
            f"timeout_ms must be an integer in {MIN_TIMEOUT_MS}..{MAX_TIMEOUT_MS}",
            field="timeout_ms",
        )
    gateway, ecus = _targets(vehicle, ecu_id, zone)
    now = timezone.now()
    request = DiagnosticRequest.objects.create(
        vehicle=vehicle,
        scope=DiagnosticScope.ZONE if gateway else DiagnosticScope.ECU,
        zonal_gateway=gateway,
        service_id=uds_request.service_id,
        parameters=uds_request.parameters,
        request_hex=uds_request.payload.hex(),
        timeout_ms=timeout_ms,
        status=DiagnosticStatus.SENT,
        requested_by=requested_by if getattr(requested_by, "pk", None) else None,
        deadline_at=now + timedelta(milliseconds=timeout_ms) + TRANSPORT_GRACE,
    )
    DiagnosticResult.objects.bulk_create(DiagnosticResult(request=request, ecu=e) for e in ecus)
    publish_after_commit(
        vehicle.vin,
        topics.DIAGNOSTICS,
        {
            "request_id": str(request.request_id),
            "vin": vehicle.vin,
            "service_id": uds_request.service_id,
            "request_hex": request.request_hex,
            "timeout_ms": timeout_ms,
            "zone": gateway.gateway_id if gateway else None,
            "targets": [
                {
                    "ecu_id": e.ecu_id,
                    "doip_address": e.doip_logical_address,
                    "gateway_id": e.zonal_gateway.gateway_id,
                }
                for e in ecus
            ],
            "issued_at": now.isoformat(),
        },
    )
    record_event(
        action="diagnostics.sent",
        actor=requested_by,
        vehicle_vin=vehicle.vin,
        object_type="diagnostic_request",
        object_id=request.request_id,
        details={
            "service": uds_request.service_name,
            "service_id": uds_request.service_id,
            "changes_ecu": uds_request.changes_ecu,
            "parameters": uds_request.parameters,
            "request_hex": request.request_hex,
            "targets": [e.ecu_id for e in ecus],
        },
    )
    publish_event(vehicle_group(vehicle.vin), _status_event(request, counts=None))
    return request


def _decode_items(
    request: DiagnosticRequest, items: list[dict[str, Any]], known: set[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Check and decode every item before anything is written, so a bad message changes nothing."""
    decoded = []
    for index, item in enumerate(items):
        ecu_id = item["ecu_id"]
        if ecu_id not in known:
            raise DomainError(
                f"{ecu_id} is not a target of this request", field=f"results[{index}]"
            )
        if "error" in item:
            decoded.append(
                (ecu_id, {"outcome": EcuOutcome.TIMEOUT, "decoded": {"error": item["error"]}})
            )
            continue
        payload = bytes.fromhex(item["response_hex"])
        try:
            answer = decode_response(request.service_id, payload)
        except UndecodableResponse as exc:
            raise DomainError(str(exc), field=f"results[{index}].response_hex")
        decoded.append(
            (
                ecu_id,
                {
                    "outcome": EcuOutcome.POSITIVE if answer.positive else EcuOutcome.NEGATIVE,
                    "response_hex": payload.hex(),
                    "decoded": answer.decoded,
                    "nrc": answer.nrc,
                    "nrc_name": answer.nrc_name,
                },
            )
        )
    return decoded


@transaction.atomic(durable=True)
def record_diagnostic_response(*, vehicle: Vehicle, response: dict[str, Any]) -> DiagnosticRequest:
    """Store the ECU answers a vehicle relays; the request completes when no ECU is pending.

    Answers to a request that is already final, or for an ECU that already answered, are ignored.
    """
    try:
        request_id = uuid.UUID(str(response["request_id"]))
    except (KeyError, ValueError):
        raise DomainError("request_id is not a UUID", field="request_id")
    request = (
        DiagnosticRequest.objects.select_for_update()
        .filter(request_id=request_id, vehicle=vehicle)
        .first()
    )
    if request is None:
        raise NotFoundError("no such diagnostic request for this vehicle", field="request_id")
    results = {r.ecu.ecu_id: r for r in request.results.select_related("ecu")}
    answers = _decode_items(request, response["results"], set(results))
    if request.status not in (DiagnosticStatus.PENDING, DiagnosticStatus.SENT):
        return request
    now = timezone.now()
    changed = []
    for ecu_id, fields in answers:
        result = results[ecu_id]
        if result.outcome != EcuOutcome.PENDING:
            continue
        for name, value in fields.items():
            setattr(result, name, value)
        result.received_at = now
        changed.append(result)
    DiagnosticResult.objects.bulk_update(
        changed, ["outcome", "response_hex", "decoded", "nrc", "nrc_name", "received_at"]
    )
    group = diagnostics_group(request.request_id)
    for result in changed:
        publish_event(group, _result_event(request, result))
    if all(r.outcome != EcuOutcome.PENDING for r in results.values()):
        _finish(request, list(results.values()), now)
    return request


def _finish(request: DiagnosticRequest, results: list[DiagnosticResult], now: datetime) -> None:
    answered = sum(r.outcome in (EcuOutcome.POSITIVE, EcuOutcome.NEGATIVE) for r in results)
    if answered == len(results):
        request.status = DiagnosticStatus.COMPLETED
    elif answered:
        request.status = DiagnosticStatus.PARTIAL
    else:
        request.status = DiagnosticStatus.TIMED_OUT
    request.completed_at = now
    request.save(update_fields=["status", "completed_at"])
    counts = {o.value: sum(r.outcome == o for r in results) for o in EcuOutcome}
    record_event(
        action="diagnostics.finished",
        actor=f"vehicle:{request.vehicle.vin}",
        vehicle_vin=request.vehicle.vin,
        object_type="diagnostic_request",
        object_id=request.request_id,
        after={"status": request.status, **counts},
        details={"duration_ms": request.duration_ms},
    )
    event = _status_event(request, counts=counts)
    publish_event(diagnostics_group(request.request_id), event)
    publish_event(vehicle_group(request.vehicle.vin), event)


def _status_event(request: DiagnosticRequest, *, counts: dict[str, int] | None) -> dict[str, Any]:
    return {
        "kind": "diagnostics_status",
        "request_id": str(request.request_id),
        "vin": request.vehicle.vin,
        "service_id": request.service_id,
        "status": request.status,
        "duration_ms": request.duration_ms,
        "counts": counts,
    }


def _result_event(request: DiagnosticRequest, result: DiagnosticResult) -> dict[str, Any]:
    return {
        "kind": "diagnostics_result",
        "request_id": str(request.request_id),
        "ecu_id": result.ecu.ecu_id,
        "outcome": result.outcome,
        "response_hex": result.response_hex,
        "decoded": result.decoded,
        "nrc": result.nrc,
        "nrc_name": result.nrc_name,
    }


def expire_overdue(*, now: datetime | None = None) -> dict[str, int]:
    """Time out commands and diagnostic requests whose deadline passed with no complete answer."""
    now = now or timezone.now()
    expired_requests = 0
    for pk in list(DiagnosticRequest.objects.overdue(now).values_list("pk", flat=True)[:1000]):
        expired_requests += _expire_request(pk, now)
    return {"commands": expire_overdue_commands(now=now), "diagnostics": expired_requests}


@transaction.atomic
def _expire_request(pk: int, now: datetime) -> int:
    request = (
        DiagnosticRequest.objects.select_for_update()
        .select_related("vehicle")
        .filter(pk=pk, status__in=[DiagnosticStatus.PENDING, DiagnosticStatus.SENT])
        .first()
    )
    if request is None:
        return 0  # an answer completed it while we looked
    results = list(request.results.select_related("ecu"))
    group = diagnostics_group(request.request_id)
    for result in results:
        if result.outcome == EcuOutcome.PENDING:
            result.outcome = EcuOutcome.TIMEOUT
            result.save(update_fields=["outcome"])
            publish_event(group, _result_event(request, result))
    # Silence ends the request at its deadline, whenever the sweep notices.
    _finish(request, results, min(now, request.deadline_at or now))
    return 1


def settle_if_overdue(*, request: DiagnosticRequest) -> DiagnosticRequest:
    """Time out `request` now if its deadline passed, so a reader never sees a stale "sent"."""
    now = timezone.now()
    if request.status in (DiagnosticStatus.PENDING, DiagnosticStatus.SENT) and (
        request.deadline_at and request.deadline_at < now
    ):
        _expire_request(request.pk, now)
        request.refresh_from_db()
    return request
