from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.api import DomainError, NotFoundError
from core.audit import record_event
from core.events import FLEET_GROUP, publish_event, vehicle_group
from core.mqtt import topics
from core.mqtt.publisher import publish_after_commit
from diagnostics.choices import CONTROL_FINAL_STATUSES, ControlCommandName, ControlStatus
from diagnostics.models import ControlCommand
from ota.models import Campaign
from vehicles.models import Vehicle

MAX_VEHICLES_PER_COMMAND = 10_000
DEFAULT_CONTROL_TIMEOUT_S = 60

# Which status a response may move a command to, from each open status.
_TRANSITIONS: dict[str, set[str]] = {
    ControlStatus.SENT: {
        ControlStatus.ACCEPTED,
        ControlStatus.REJECTED,
        ControlStatus.COMPLETED,
        ControlStatus.FAILED,
    },
    ControlStatus.ACCEPTED: {ControlStatus.COMPLETED, ControlStatus.FAILED},
}


def vehicles_for_control(
    *, vins: Sequence[str] | None = None, campaign_id: int | None = None
) -> list[Vehicle]:
    """The vehicles a command addresses: a VIN list or every vehicle of a campaign."""
    if bool(vins) == (campaign_id is not None):
        raise DomainError("give either vins or campaign_id", field="vins")
    if campaign_id is not None:
        if not Campaign.objects.filter(pk=campaign_id).exists():
            raise NotFoundError(f"no campaign {campaign_id}", field="campaign_id")
        found = list(
            Vehicle.objects.filter(ota_updates__campaign_id=campaign_id).distinct().order_by("vin")
        )
        if not found:
            raise DomainError("the campaign has no vehicles yet", field="campaign_id")
        return found
    assert vins is not None
    if len(vins) > MAX_VEHICLES_PER_COMMAND:
        raise DomainError(f"at most {MAX_VEHICLES_PER_COMMAND} vehicles", field="vins")
    found = {v.vin: v for v in Vehicle.objects.filter(vin__in=vins)}
    missing = sorted(set(vins) - set(found))
    if missing:
        raise NotFoundError(f"unknown vehicles: {', '.join(missing[:10])}", field="vins")
    return [found[vin] for vin in dict.fromkeys(vins)]


@transaction.atomic(durable=True)
def send_control_command(
    *,
    vehicles: Sequence[Vehicle],
    command: str,
    params: dict[str, Any] | None = None,
    issued_by: Any = None,
    timeout_s: int = DEFAULT_CONTROL_TIMEOUT_S,
) -> list[ControlCommand]:
    """Create one command per vehicle and publish each after commit; silence past `timeout_s` times out."""
    if command not in ControlCommandName.values:
        raise DomainError(f"unknown command {command!r}", field="command")
    if not 1 <= timeout_s <= 24 * 3600:
        raise DomainError("timeout_s must be between 1 and 86400", field="timeout_s")
    if not vehicles:
        raise DomainError("no vehicle to send to", field="vins")
    params = params or {}
    now = timezone.now()
    deadline = now + timedelta(seconds=timeout_s)
    batch_id = uuid.uuid4()
    commands = ControlCommand.objects.bulk_create(
        ControlCommand(
            vehicle=vehicle,
            command=command,
            params=params,
            issued_by=issued_by if getattr(issued_by, "pk", None) else None,
            batch_id=batch_id,
            deadline_at=deadline,
        )
        for vehicle in vehicles
    )
    for cmd, vehicle in zip(commands, vehicles, strict=True):
        publish_after_commit(
            vehicle.vin,
            topics.CONTROL,
            {
                "command_id": str(cmd.command_id),
                "vin": vehicle.vin,
                "command": command,
                "params": params,
                "issued_at": now.isoformat(),
                "expires_at": deadline.isoformat(),
            },
        )
    record_event(
        action="control.sent",
        actor=issued_by,
        vehicle_vin=vehicles[0].vin if len(vehicles) == 1 else "",
        object_type="control_batch",
        object_id=batch_id,
        details={
            "command": command,
            "params": params,
            "vins": [v.vin for v in vehicles][:100],
            "vehicle_count": len(vehicles),
            "timeout_s": timeout_s,
        },
    )
    publish_event(
        FLEET_GROUP,
        {
            "kind": "control_sent",
            "batch_id": str(batch_id),
            "command": command,
            "vehicle_count": len(vehicles),
        },
    )
    return commands


@transaction.atomic(durable=True)
def record_control_response(*, vehicle: Vehicle, response: dict[str, Any]) -> ControlCommand:
    """Apply a vehicle's acknowledgement or result to its command.

    A repeated or out-of-order response (e.g. "accepted" after "completed") leaves the command
    as it is, and so does any response after the deadline turned it into a timeout.
    """
    try:
        command_id = uuid.UUID(str(response["command_id"]))
    except (KeyError, ValueError):
        raise DomainError("command_id is not a UUID", field="command_id")
    command = (
        ControlCommand.objects.select_for_update()
        .filter(command_id=command_id, vehicle=vehicle)
        .first()
    )
    if command is None:
        raise NotFoundError("no such command for this vehicle", field="command_id")
    new_status = response["status"]
    if command.status in CONTROL_FINAL_STATUSES or new_status not in _TRANSITIONS.get(
        command.status, set()
    ):
        return command
    before = command.status
    now = timezone.now()
    command.status = new_status
    command.detail = str(response.get("detail", ""))[:500]
    fields = ["status", "detail"]
    if command.acknowledged_at is None:
        command.acknowledged_at = now
        fields.append("acknowledged_at")
    if new_status in CONTROL_FINAL_STATUSES:
        command.finished_at = now
        command.result = response.get("result") or {}
        fields += ["finished_at", "result"]
    command.save(update_fields=fields)
    record_event(
        action="control.response",
        actor=f"vehicle:{vehicle.vin}",
        vehicle_vin=vehicle.vin,
        object_type="control_command",
        object_id=command.command_id,
        before={"status": before},
        after={"status": new_status},
        details={"command": command.command, "detail": command.detail},
    )
    publish_event(vehicle_group(vehicle.vin), _command_event(command))
    return command


def _command_event(command: ControlCommand) -> dict[str, Any]:
    return {
        "kind": "control_status",
        "command_id": str(command.command_id),
        "batch_id": str(command.batch_id) if command.batch_id else None,
        "vin": command.vehicle.vin,
        "command": command.command,
        "status": command.status,
        "detail": command.detail,
    }


def expire_overdue_commands(*, now: Any = None) -> int:
    """Turn open commands past their deadline into timeouts; returns how many."""
    now = now or timezone.now()
    expired = 0
    for pk in list(ControlCommand.objects.overdue(now).values_list("pk", flat=True)[:1000]):
        with transaction.atomic():
            # Conditional write: a response that raced us in wins.
            updated = (
                ControlCommand.objects.filter(pk=pk)
                .exclude(status__in=CONTROL_FINAL_STATUSES)
                .update(status=ControlStatus.TIMED_OUT, finished_at=now, detail="no answer")
            )
            if updated:
                command = ControlCommand.objects.select_related("vehicle").get(pk=pk)
                publish_event(vehicle_group(command.vehicle.vin), _command_event(command))
                expired += 1
    return expired
