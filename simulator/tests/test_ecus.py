from __future__ import annotations

import pytest

from diagnostics.uds import build_request, decode_response
from simulator.ecus import SimulatedEcu, answers

VIN = "WVWZZZ1JZ3W386752"


@pytest.mark.parametrize(
    ("service", "params", "expected"),
    [
        (0x10, {"session": 3}, {"session": 3}),
        (0x22, {"dids": [0xF190]}, {"text": VIN}),
        (0x19, {"subfunction": 2, "status_mask": 0xFF}, {"dtcs": [{"dtc": "012345", "status": 9}]}),
        (0x31, {"control_type": 1, "routine_id": 0xF003}, {"routine_id": 0xF003}),
        (0x3E, {}, {"subfunction": 0}),
    ],
)
def test_simulated_ecu_answers_what_the_server_decodes(service, params, expected):
    request = build_request(service, params)
    answer = decode_response(
        request.service_id, SimulatedEcu("ECU_001", VIN).handle(request.payload)
    )
    assert answer.positive
    assert expected.items() <= answer.decoded.items()


def test_write_outside_extended_session_is_refused_with_conditions_not_correct():
    request = build_request(0x2E, {"did": 0xF190, "data_hex": "00"})
    answer = decode_response(0x2E, SimulatedEcu("ECU_001", VIN).handle(request.payload))
    assert (answer.positive, answer.nrc_name) == (False, "ConditionsNotCorrect")


def test_unknown_did_is_request_out_of_range():
    request = build_request(0x22, {"dids": [0x1234]})
    answer = decode_response(0x22, SimulatedEcu("ECU_001", VIN).handle(request.payload))
    assert answer.nrc_name == "RequestOutOfRange"


@pytest.mark.parametrize(
    ("rule", "ecu_id", "expected"),
    [
        ("odd", "ECU_001", True),
        ("odd", "ECU_002", False),
        ("ECU_002,ECU_003", "ECU_002", True),
        ("none", "ECU_001", False),
    ],
)
def test_answer_rules(rule, ecu_id, expected):
    assert answers(ecu_id, rule) is expected
