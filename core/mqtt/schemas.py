"""JSON schemas (draft 2020-12) of every MQTT payload; docs/PROTOCOL.md prints the same documents."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

import fastjsonschema
from fastjsonschema.draft04 import CodeGeneratorDraft04
from jsonschema import Draft202012Validator, FormatChecker

from core.jsonlimits import MAX_DB_INTEGER
from core.mqtt import topics

# Every pattern ends in END: Python's "$" (jsonschema searches with it) also matches before a
# final newline, and the look-ahead refuses that newline; ECMA-262 "$" has no such case.
END = r"$(?!\n)"
VIN = {"type": "string", "pattern": "^[A-HJ-NPR-Z0-9]{17}" + END}
UUID = {
    "type": "string",
    "pattern": "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
    + END,
}
# Every integer that is stored fits a 64-bit column.
ID = {"type": "integer", "minimum": 1, "maximum": MAX_DB_INTEGER}
COUNTER = {"type": "integer", "minimum": 0, "maximum": MAX_DB_INTEGER}
# The last second of year 9999, the end of the datetime range.
MAX_UNIX_SECONDS = 253402300799
# Unix seconds or ISO 8601, as vehicles send both.
TIMESTAMP = {
    "oneOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_UNIX_SECONDS},
        {"type": "string", "format": "date-time", "maxLength": 40},
    ]
}
ECU_ID = {"type": "string", "pattern": "^[A-Za-z0-9_]{1,16}" + END}
HEX = {"type": "string", "pattern": "^([0-9a-fA-F]{2})*" + END, "maxLength": 8192}
SHA256_HEX = {"type": "string", "pattern": "^[0-9a-fA-F]{64}" + END}

TELEMETRY = {
    "$id": "telemetry",
    "title": "Telemetry (vehicle -> server, vehicle/{vin}/telemetry)",
    "type": "object",
    "required": ["vin", "seq", "timestamp", "values"],
    "additionalProperties": False,
    "properties": {
        "vin": VIN,
        "seq": {**COUNTER, "description": "increases per message"},
        "timestamp": TIMESTAMP,
        "vehicle_state": {
            "enum": [
                "DRIVING",
                "PARKED_IGNITION_ON",
                "PARKED_IGNITION_OFF",
                "CHARGING",
                "OTA_ACTIVE",
            ]
        },
        "values": {
            "type": "object",
            "maxProperties": 64,
            "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,47}" + END},
            "additionalProperties": {
                "type": ["number", "string", "boolean", "null"],
                "maxLength": 128,
            },
        },
    },
}

STATUS = {
    "$id": "status",
    "title": "Presence (vehicle -> server, vehicle/{vin}/status, retained; also the last will)",
    "type": "object",
    "required": ["vin", "state"],
    "additionalProperties": False,
    "properties": {
        "vin": VIN,
        "state": {"enum": ["online", "offline"]},
        "timestamp": TIMESTAMP,
        "reason": {"type": "string", "maxLength": 200},
    },
}

OTA_STATUS = {
    "$id": "ota-status",
    "title": "OTA status report (vehicle -> server, vehicle/{vin}/ota/status)",
    "type": "object",
    "required": ["vin", "report_id"],
    "additionalProperties": False,
    "properties": {
        "vin": VIN,
        "report_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "update_id": ID,
        "sequence": COUNTER,
        "vmg_state": {"type": "integer", "minimum": 0, "maximum": 6},
        "state": {
            "enum": [
                "IDLE",
                "DOWNLOADING",
                "VERIFYING",
                "INSTALLING",
                "READY",
                "ERROR",
                "COMPLETED",
            ]
        },
        "percentage": {"type": "integer", "minimum": 0, "maximum": 100},
        "current_step": {"type": "string", "maxLength": 200},
        "error": {"type": "string", "maxLength": 500},
        "running_versions": {
            "type": "object",
            "maxProperties": 128,
            "propertyNames": ECU_ID,
            "additionalProperties": {"type": "string", "maxLength": 64},
        },
        "rolled_back": {"type": "boolean"},
        "package_proofs": {
            "type": "object",
            "maxProperties": 128,
            "propertyNames": {"type": "string", "minLength": 1, "maxLength": 64},
            "additionalProperties": SHA256_HEX,
        },
        "timestamp": TIMESTAMP,
    },
}

CONTROL_COMMAND = {
    "$id": "control-command",
    "title": "Control command (server -> vehicle, vehicle/{vin}/control)",
    "type": "object",
    "required": ["command_id", "vin", "command", "params", "issued_at", "expires_at"],
    "additionalProperties": False,
    "properties": {
        "command_id": UUID,
        "vin": VIN,
        "command": {
            "enum": ["collect_vci", "collect_readiness", "start_download", "activate", "cancel"]
        },
        "params": {"type": "object"},
        "issued_at": TIMESTAMP,
        "expires_at": TIMESTAMP,
    },
}

CONTROL_RESPONSE = {
    "$id": "control-response",
    "title": "Control response (vehicle -> server, vehicle/{vin}/control/response)",
    "type": "object",
    "required": ["command_id", "vin", "status"],
    "additionalProperties": False,
    "properties": {
        "command_id": UUID,
        "vin": VIN,
        "status": {"enum": ["accepted", "rejected", "completed", "failed"]},
        "detail": {"type": "string", "maxLength": 500},
        "result": {"type": "object"},
        "timestamp": TIMESTAMP,
    },
}

DIAGNOSTICS_REQUEST = {
    "$id": "diagnostics-request",
    "title": "UDS request (server -> vehicle, vehicle/{vin}/diagnostics)",
    "type": "object",
    "required": ["request_id", "vin", "service_id", "request_hex", "timeout_ms", "targets"],
    "additionalProperties": False,
    "properties": {
        "request_id": UUID,
        "vin": VIN,
        "service_id": {"type": "integer", "minimum": 0, "maximum": 255},
        "request_hex": HEX,
        "timeout_ms": {"type": "integer", "minimum": 100, "maximum": 120000},
        "zone": {"type": ["string", "null"], "maxLength": 32},
        "targets": {
            "type": "array",
            "minItems": 1,
            "maxItems": 128,
            "items": {
                "type": "object",
                "required": ["ecu_id", "doip_address"],
                "additionalProperties": False,
                "properties": {
                    "ecu_id": ECU_ID,
                    "doip_address": {"type": "integer", "minimum": 0, "maximum": 65535},
                    "gateway_id": {"type": "string", "maxLength": 32},
                },
            },
        },
        "issued_at": TIMESTAMP,
    },
}

DIAGNOSTICS_RESPONSE = {
    "$id": "diagnostics-response",
    "title": "UDS responses (vehicle -> server, vehicle/{vin}/diagnostics/response)",
    "type": "object",
    "required": ["request_id", "vin", "results"],
    "additionalProperties": False,
    "properties": {
        "request_id": UUID,
        "vin": VIN,
        "results": {
            "type": "array",
            "minItems": 1,
            "maxItems": 128,
            "items": {
                "type": "object",
                "required": ["ecu_id"],
                "additionalProperties": False,
                "properties": {
                    "ecu_id": ECU_ID,
                    "response_hex": {**HEX, "minLength": 2},
                    "error": {"enum": ["no_response", "unreachable"]},
                },
                "oneOf": [{"required": ["response_hex"]}, {"required": ["error"]}],
            },
        },
        "timestamp": TIMESTAMP,
    },
}

DESIRED_STATE = {
    "$id": "desired-state",
    "title": "Desired state (server -> vehicle, vehicle/{vin}/desired-state, retained)",
    "type": "object",
    "required": ["vin", "updated_at", "pending_update"],
    "additionalProperties": False,
    "properties": {
        "vin": VIN,
        "updated_at": TIMESTAMP,
        "pending_update": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["update_id"],
                    "properties": {
                        "update_id": ID,
                        "campaign_id": {"oneOf": [ID, {"type": "null"}]},
                        "check_url": {"type": "string", "maxLength": 300},
                    },
                },
            ]
        },
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    topics.TELEMETRY: TELEMETRY,
    topics.STATUS: STATUS,
    topics.OTA_STATUS: OTA_STATUS,
    topics.CONTROL_RESPONSE: CONTROL_RESPONSE,
    topics.DIAGNOSTICS_RESPONSE: DIAGNOSTICS_RESPONSE,
    topics.CONTROL: CONTROL_COMMAND,
    topics.DIAGNOSTICS: DIAGNOSTICS_REQUEST,
    topics.DESIRED_STATE: DESIRED_STATE,
}


# jsonschema checks "date-time" only with an optional package installed; the explaining
# validator uses the fast validator's own pattern, so the two always agree on a timestamp.
FORMAT_CHECKER = FormatChecker()
_DATE_TIME = re.compile(CodeGeneratorDraft04.FORMAT_REGEXS["date-time"])


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or _DATE_TIME.match(value) is not None


@functools.cache
def _validator(kind: str) -> Draft202012Validator:
    schema = SCHEMAS[kind]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FORMAT_CHECKER)


@functools.cache
def _compiled(kind: str) -> Callable[[Any], Any]:
    # The schemas use only keywords that mean the same in draft 7, which fastjsonschema
    # compiles to plain Python: about 15x faster than jsonschema on the ingest hot path.
    return fastjsonschema.compile(SCHEMAS[kind])


def schema_errors(kind: str, document: Any) -> list[str]:
    """Messages naming the path of each violation (empty when the document is valid)."""
    try:
        _compiled(kind)(document)
    except fastjsonschema.JsonSchemaException as fast_error:
        # Rare path: let jsonschema explain every violation with its path.
        errors = sorted(_validator(kind).iter_errors(document), key=lambda e: list(e.absolute_path))
        if not errors:
            return [str(fast_error)[:300]]
        return [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"[:300]
            for e in errors[:5]
        ]
    return []


def main() -> None:
    """Print every schema, for docs/PROTOCOL.md."""
    for kind, schema in SCHEMAS.items():
        print(f"## {kind}\n```json\n{json.dumps(schema, indent=2)}\n```\n")


if __name__ == "__main__":
    main()
