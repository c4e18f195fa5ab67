"""Valid MQTT payloads with overridable fields."""

from __future__ import annotations

import json
import time
from typing import Any


def telemetry(vin: str, seq: int = 1, **overrides: Any) -> dict[str, Any]:
    return {
        "vin": vin,
        "seq": seq,
        "timestamp": int(time.time()) - 100 + seq,
        "vehicle_state": "PARKED_IGNITION_ON",
        "values": {"battery_percent": 80, "speed_kph": 0.0, "gear": "P"},
        **overrides,
    }


def control_response(vin: str, command_id: Any, status: str = "accepted", **extra: Any) -> dict:
    return {"command_id": str(command_id), "vin": vin, "status": status, **extra}


def diagnostics_response(vin: str, request_id: Any, results: list[dict[str, Any]]) -> dict:
    return {"request_id": str(request_id), "vin": vin, "results": results}


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()
