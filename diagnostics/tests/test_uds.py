from __future__ import annotations

import pytest

from core.api import DomainError
from diagnostics.uds import ECU_CHANGING_SERVICES, build_request, decode_response, parse_service


@pytest.mark.parametrize(
    ("service", "params", "payload"),
    [
        (0x10, {"session": "extendedDiagnosticSession"}, "1003"),
        ("0x11", {"reset_type": "hardReset"}, "1101"),
        (0x14, {}, "14ffffff"),
        (0x19, {"subfunction": 2, "status_mask": 0x09}, "190209"),
        (0x19, {"subfunction": "reportSupportedDTCs"}, "190a"),
        ("ReadDataByIdentifier", {"dids": [0xF190, "0xF194"]}, "22f190f194"),
        (0x27, {"level": 1}, "2701"),
        (0x27, {"level": 2, "key_hex": "a1b2"}, "2702a1b2"),
        (0x2E, {"did": 0xF190, "data_hex": "4142"}, "2ef1904142"),
        (0x31, {"control_type": "startRoutine", "routine_id": 0xF003}, "3101f003"),
        (0x3E, {}, "3e00"),
    ],
)
def test_builds_request_bytes_for_each_supported_service(service, params, payload):
    assert build_request(service, params).payload.hex() == payload


@pytest.mark.parametrize(
    ("service", "params", "field"),
    [
        (0x22, {"dids": [0x1F190]}, "params.dids[0]"),
        (0x22, {"dids": []}, "params.dids"),
        (0x22, {}, "params.dids"),
        (0x22, {"dids": list(range(17))}, "params.dids"),
        (0x10, {"session": 0}, "params.session"),
        (0x10, {"session": "warpSession"}, "params.session"),
        (0x11, {}, "params.reset_type"),
        (0x19, {"subfunction": 0x04}, "params.subfunction"),
        (0x27, {"level": 2}, "params.key_hex"),
        (0x2E, {"did": 0xF190, "data_hex": "zz"}, "params.data_hex"),
        (0x2E, {"did": 0xF190, "data_hex": ""}, "params.data_hex"),
        (0x31, {"control_type": 4, "routine_id": 1}, "params.control_type"),
        (0x34, {}, "service"),
        ("bogus", {}, "service"),
        (True, {}, "service"),
        (0x22, "dids", "params"),
    ],
)
def test_rejects_invalid_requests_naming_the_field(service, params, field):
    with pytest.raises(DomainError) as caught:
        build_request(service, params)
    assert caught.value.field == field


def test_ecu_changing_services_are_write_reset_clear_and_routine():
    assert {0x2E, 0x31, 0x11, 0x14} == ECU_CHANGING_SERVICES
    assert build_request(0x14, {}).changes_ecu
    assert not build_request(0x22, {"dids": [0xF190]}).changes_ecu


def test_parse_service_accepts_number_hex_and_name():
    assert parse_service(0x3E) == parse_service("3E") == parse_service("TesterPresent") == 0x3E


def test_decodes_positive_read_of_vin_as_text():
    answer = decode_response(0x22, bytes.fromhex("62f190") + b"WVWZZZ1JZ3W386752")
    assert answer.positive
    assert answer.decoded["did"] == 0xF190
    assert answer.decoded["text"] == "WVWZZZ1JZ3W386752"


def test_decodes_negative_response_with_nrc_name():
    answer = decode_response(0x22, bytes.fromhex("7f2231"))
    assert not answer.positive
    assert (answer.nrc, answer.nrc_name) == (0x31, "RequestOutOfRange")


def test_decodes_dtc_list_and_session_timing():
    dtcs = decode_response(0x19, bytes.fromhex("5902ff01020309"))
    assert dtcs.decoded["dtcs"] == [{"dtc": "010203", "status": 9}]
    session = decode_response(0x10, bytes.fromhex("5003003201f4"))
    assert (session.decoded["p2_ms"], session.decoded["p2_star_ms"]) == (50, 5000)


@pytest.mark.parametrize("payload", ["", "ff", "6e", "5003"])
def test_refuses_bytes_that_do_not_answer_the_request(payload):
    from diagnostics.uds import UndecodableResponse

    with pytest.raises(UndecodableResponse):
        decode_response(0x22, bytes.fromhex(payload))
