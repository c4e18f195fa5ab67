"""Identifiers validated by regular expressions must match whole, trailing newline included."""

from __future__ import annotations

import re

import pytest

from console import consumers
from core.mqtt import topics
from firmware import otap, signing
from pqc import pki

VIN = "WVWZZZ1JZ3W386752"


@pytest.mark.parametrize(
    ("pattern", "valid"),
    [
        (pki.VIN_RE, VIN),
        (consumers._VIN, VIN),
        (consumers._UUID, "0f8fad5b-d9cb-469f-a165-70867728950e"),
        (signing.KEY_NAME_RE, "20261126T120000Z"),
        (otap.ECU_ID_RE, "ECU_001"),
        (otap.GATEWAY_ID_RE, "ZGW_FRONT"),
        (otap.VERSION_RE, "1.2.2"),
    ],
)
def test_validator_refuses_a_trailing_newline(pattern: re.Pattern[str], valid: str) -> None:
    assert pattern.match(valid)
    for suffix in ("\n", "\r\n", " "):
        assert not pattern.match(valid + suffix)


def test_inbound_topic_with_a_trailing_newline_is_not_parsed() -> None:
    topic = f"ota/{VIN}/status"
    assert topics.parse_inbound(topic, root="ota")
    assert topics.parse_inbound(topic + "\n", root="ota") is None
