"""UDS (ISO 14229) requests the console may send: validation, encoding and response decoding.

udsoncan supplies the service identifiers, sub-function values and NRC names; this module only
adds the per-service parameter rules of the remote console.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from udsoncan import Request, Response
from udsoncan import services as uds

from core.api import DomainError

MAX_DIDS_PER_REQUEST = 16
MAX_DATA_BYTES = 4000
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})*$")

# Services whose effect on the ECU outlives the request: the operator role and an audit row.
ECU_CHANGING_SERVICES = frozenset(
    {
        uds.WriteDataByIdentifier.request_id(),
        uds.RoutineControl.request_id(),
        uds.ECUReset.request_id(),
        uds.ClearDiagnosticInformation.request_id(),
    }
)

SUPPORTED_SERVICES: dict[int, type[uds.BaseService]] = {
    cls.request_id(): cls
    for cls in (
        uds.DiagnosticSessionControl,
        uds.ECUReset,
        uds.ClearDiagnosticInformation,
        uds.ReadDTCInformation,
        uds.ReadDataByIdentifier,
        uds.SecurityAccess,
        uds.WriteDataByIdentifier,
        uds.RoutineControl,
        uds.TesterPresent,
    )
}
_SERVICE_BY_NAME = {cls.get_name().lower(): sid for sid, cls in SUPPORTED_SERVICES.items()}


def _constants_of(holder: type) -> dict[str, int]:
    return {k: v for k, v in vars(holder).items() if not k.startswith("_") and isinstance(v, int)}


SESSIONS = _constants_of(uds.DiagnosticSessionControl.Session)
RESET_TYPES = _constants_of(uds.ECUReset.ResetType)
ROUTINE_CONTROL_TYPES = _constants_of(uds.RoutineControl.ControlType)
DTC_SUBFUNCTIONS = _constants_of(uds.ReadDTCInformation.Subfunction)
# Sub-functions of 0x19 whose only parameter is a status mask byte.
_DTC_MASK_SUBFUNCTIONS = {
    DTC_SUBFUNCTIONS["reportNumberOfDTCByStatusMask"],
    DTC_SUBFUNCTIONS["reportDTCByStatusMask"],
}
# Sub-functions of 0x19 that take no parameter at all.
_DTC_PLAIN_SUBFUNCTIONS = {
    DTC_SUBFUNCTIONS["reportSupportedDTCs"],
    DTC_SUBFUNCTIONS["reportFirstTestFailedDTC"],
    DTC_SUBFUNCTIONS["reportFirstConfirmedDTC"],
    DTC_SUBFUNCTIONS["reportMostRecentTestFailedDTC"],
    DTC_SUBFUNCTIONS["reportMostRecentConfirmedDTC"],
    DTC_SUBFUNCTIONS["reportDTCWithPermanentStatus"],
}

# DIDs whose value is text, so the console shows it as such.
TEXT_DIDS = {0xF190: "VIN", 0xF194: "ECU software number", 0xF195: "Zone VCI"}


@dataclass(frozen=True)
class UdsRequest:
    """A validated request: its service id, the normalised parameters and the bytes to send."""

    service_id: int
    service_name: str
    parameters: dict[str, Any]
    payload: bytes

    @property
    def changes_ecu(self) -> bool:
        return self.service_id in ECU_CHANGING_SERVICES


def parse_service(value: Any) -> int:
    """A service given as 34, "0x22", "22" or "ReadDataByIdentifier"."""
    sid: int | None = None
    if isinstance(value, bool):
        sid = None
    elif isinstance(value, int):
        sid = value
    elif isinstance(value, str):
        text = value.strip()
        if text.lower() in _SERVICE_BY_NAME:
            sid = _SERVICE_BY_NAME[text.lower()]
        else:
            try:
                sid = int(text, 16)
            except ValueError:
                sid = None
    if sid not in SUPPORTED_SERVICES:
        names = ", ".join(f"0x{s:02X}" for s in sorted(SUPPORTED_SERVICES))
        raise DomainError(f"unsupported UDS service {value!r}; supported: {names}", field="service")
    return sid


def _int_param(
    params: dict[str, Any],
    name: str,
    *,
    low: int,
    high: int,
    named: dict[str, int] | None = None,
    default: int | None = None,
) -> int:
    raw = params.get(name, default)
    field = f"params.{name}"
    if raw is None:
        raise DomainError(f"{name} is required", field=field)
    if isinstance(raw, str) and named and raw in named:
        return named[raw]
    if isinstance(raw, str):
        try:
            raw = int(raw, 0)
        except ValueError:
            choices = f" or one of {sorted(named)}" if named else ""
            raise DomainError(f"{name} must be an integer{choices}", field=field)
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise DomainError(f"{name} must be an integer in 0x{low:X}..0x{high:X}", field=field)
    return raw


def _hex_param(params: dict[str, Any], name: str, *, required: bool) -> bytes:
    raw = params.get(name, "")
    field = f"params.{name}"
    if not isinstance(raw, str) or not _HEX.fullmatch(raw.replace(" ", "")):
        raise DomainError(f"{name} must be a string of hex byte pairs", field=field)
    data = bytes.fromhex(raw.replace(" ", ""))
    if required and not data:
        raise DomainError(f"{name} must hold at least one byte", field=field)
    if len(data) > MAX_DATA_BYTES:
        raise DomainError(f"{name} is longer than {MAX_DATA_BYTES} bytes", field=field)
    return data


def _did_list(params: dict[str, Any]) -> list[int]:
    dids = params.get("dids")
    if not isinstance(dids, list) or not dids:
        raise DomainError(
            "dids must be a non-empty list of 2-byte identifiers", field="params.dids"
        )
    if len(dids) > MAX_DIDS_PER_REQUEST:
        raise DomainError(f"at most {MAX_DIDS_PER_REQUEST} DIDs per request", field="params.dids")
    out = []
    for index, did in enumerate(dids):
        try:
            out.append(_int_param({"did": did}, "did", low=0, high=0xFFFF))
        except DomainError:
            raise DomainError(
                "a DID is a 2-byte identifier (0x0000..0xFFFF)", field=f"params.dids[{index}]"
            )
    return out


def _session(p: dict[str, Any]) -> tuple[dict[str, Any], int | None, bytes]:
    session = _int_param(p, "session", low=1, high=0x7F, named=SESSIONS)
    return {"session": session}, session, b""


def _reset(p: dict[str, Any]) -> tuple[dict[str, Any], int | None, bytes]:
    reset = _int_param(p, "reset_type", low=1, high=0x7F, named=RESET_TYPES)
    return {"reset_type": reset}, reset, b""


def _clear_dtc(p: dict[str, Any]) -> tuple[dict[str, Any], int | None, bytes]:
    group = _int_param(p, "group", low=0, high=0xFFFFFF, default=0xFFFFFF)
    return {"group": group}, None, group.to_bytes(3, "big")


def _read_dtc(p: dict[str, Any]) -> tuple[dict[str, Any], int | None, bytes]:
    sub = _int_param(p, "subfunction", low=1, high=0x7F, named=DTC_SUBFUNCTIONS)
    if sub in _DTC_MASK_SUBFUNCTIONS:
        mask = _int_param(p, "status_mask", low=0, high=0xFF, default=0xFF)
        return {"subfunction": sub, "status_mask": mask}, sub, bytes([mask])
    if sub in _DTC_PLAIN_SUBFUNCTIONS:
        return {"subfunction": sub}, sub, b""
    raise DomainError(
        "subfunction must be 0x01, 0x02 (with status_mask) or one without parameters "
        "(0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x15)",
        field="params.subfunction",
    )


def _read_did(p: dict[str, Any]) -> tuple[dict[str, Any], int | None, bytes]:
    dids = _did_list(p)
    return {"dids": dids}, None, b"".join(d.to_bytes(2, "big") for d in dids)


def _security(p: dict[str, Any]) -> tuple[dict[str, Any], int | None, bytes]:
    level = _int_param(p, "level", low=1, high=0x7E)
    if level % 2 == 1:
        return {"level": level}, level, b""
    key = _hex_param(p, "key_hex", required=True)
    return {"level": level, "key_hex": key.hex()}, level, key


def _write_did(p: dict[str, Any]) -> tuple[dict[str, Any], int | None, bytes]:
    did = _int_param(p, "did", low=0, high=0xFFFF)
    data = _hex_param(p, "data_hex", required=True)
    return {"did": did, "data_hex": data.hex()}, None, did.to_bytes(2, "big") + data


def _routine(p: dict[str, Any]) -> tuple[dict[str, Any], int | None, bytes]:
    control = _int_param(p, "control_type", low=1, high=3, named=ROUTINE_CONTROL_TYPES)
    routine = _int_param(p, "routine_id", low=0, high=0xFFFF)
    data = _hex_param(p, "data_hex", required=False)
    normalised = {"control_type": control, "routine_id": routine, "data_hex": data.hex()}
    return normalised, control, routine.to_bytes(2, "big") + data


def _tester_present(p: dict[str, Any]) -> tuple[dict[str, Any], int | None, bytes]:
    return {}, 0, b""


_BUILDERS: dict[int, Callable[[dict[str, Any]], tuple[dict[str, Any], int | None, bytes]]] = {
    0x10: _session,
    0x11: _reset,
    0x14: _clear_dtc,
    0x19: _read_dtc,
    0x22: _read_did,
    0x27: _security,
    0x2E: _write_did,
    0x31: _routine,
    0x3E: _tester_present,
}


def build_request(service: Any, params: Any) -> UdsRequest:
    """Validate a service and its parameters and encode the request bytes; DomainError names the field."""
    sid = parse_service(service)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise DomainError("params must be an object", field="params")
    normalised, subfunction, data = _BUILDERS[sid](params)
    service_cls = SUPPORTED_SERVICES[sid]
    request = Request(service=service_cls, subfunction=subfunction, data=data or None)
    return UdsRequest(
        service_id=sid,
        service_name=service_cls.get_name(),
        parameters=normalised,
        payload=request.get_payload(),
    )


@dataclass(frozen=True)
class DecodedResponse:
    positive: bool
    nrc: int | None
    nrc_name: str
    decoded: dict[str, Any]


class UndecodableResponse(ValueError):
    """The bytes are not a UDS response to the request they claim to answer."""


def decode_response(service_id: int, payload: bytes) -> DecodedResponse:
    """Decode an ECU's answer to `service_id`: a positive response's fields or the NRC of a 7F."""
    try:
        response = Response.from_payload(payload)
    except Exception as exc:  # udsoncan raises several types for garbage
        raise UndecodableResponse(f"not a UDS response: {exc}") from None
    if not response.valid or response.service is None:
        raise UndecodableResponse(f"not a UDS response: {response.invalid_reason}")
    if response.service.request_id() != service_id:
        raise UndecodableResponse(
            f"answers service 0x{response.service.request_id():02X}, not 0x{service_id:02X}"
        )
    if not response.positive:
        return DecodedResponse(
            positive=False,
            nrc=response.code,
            nrc_name=response.code_name or f"NRC 0x{response.code:02X}",
            decoded={},
        )
    return DecodedResponse(
        positive=True,
        nrc=None,
        nrc_name="",
        decoded=_decode_positive(service_id, bytes(response.data or b"")),
    )


def _decode_positive(sid: int, data: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = {"service": SUPPORTED_SERVICES[sid].get_name()}
    if sid == 0x10 and len(data) >= 5:
        decoded.update(
            session=data[0],
            p2_ms=int.from_bytes(data[1:3], "big"),
            p2_star_ms=int.from_bytes(data[3:5], "big") * 10,
        )
    elif sid in (0x11, 0x3E, 0x27, 0x31) and data:
        decoded["subfunction"] = data[0]
        if sid == 0x27 and len(data) > 1:
            decoded["seed_hex"] = data[1:].hex()
        if sid == 0x31 and len(data) >= 3:
            decoded["routine_id"] = int.from_bytes(data[1:3], "big")
            decoded["status_record_hex"] = data[3:].hex()
    elif sid == 0x19 and data:
        decoded.update(_decode_dtc_report(data))
    elif sid == 0x22 and len(data) >= 2:
        did = int.from_bytes(data[:2], "big")
        decoded["did"] = did
        decoded["data_hex"] = data[2:].hex()
        if did in TEXT_DIDS:
            decoded["text"] = data[2:].decode("ascii", errors="replace")
    elif sid == 0x2E and len(data) >= 2:
        decoded["did"] = int.from_bytes(data[:2], "big")
    return decoded


def _decode_dtc_report(data: bytes) -> dict[str, Any]:
    sub = data[0]
    out: dict[str, Any] = {"subfunction": sub}
    if sub == DTC_SUBFUNCTIONS["reportNumberOfDTCByStatusMask"] and len(data) >= 5:
        out.update(
            availability_mask=data[1], format=data[2], count=int.from_bytes(data[3:5], "big")
        )
        return out
    if len(data) >= 2:
        out["availability_mask"] = data[1]
        records = data[2:]
        out["dtcs"] = [
            {"dtc": f"{int.from_bytes(records[i : i + 3], 'big'):06X}", "status": records[i + 3]}
            for i in range(0, len(records) - 3, 4)
        ]
    return out
