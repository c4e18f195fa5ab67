"""Telemetry, presence, control commands and remote UDS diagnostics.

Views, the MQTT ingest and management commands all call these functions.
"""

from __future__ import annotations

from diagnostics.services.control import (
    record_control_response,
    send_control_command,
    vehicles_for_control,
)
from diagnostics.services.drops import count_drop, drop_counts
from diagnostics.services.remote import (
    expire_overdue,
    record_diagnostic_response,
    send_diagnostic_request,
    settle_if_overdue,
)
from diagnostics.services.telemetry import (
    ensure_telemetry_partitions,
    prune_telemetry,
    record_presence,
    record_telemetry,
    record_telemetry_batch,
)

__all__ = [
    "count_drop",
    "drop_counts",
    "ensure_telemetry_partitions",
    "expire_overdue",
    "prune_telemetry",
    "record_control_response",
    "record_diagnostic_response",
    "record_presence",
    "record_telemetry",
    "record_telemetry_batch",
    "send_control_command",
    "send_diagnostic_request",
    "settle_if_overdue",
    "vehicles_for_control",
]
