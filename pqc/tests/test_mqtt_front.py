from __future__ import annotations

import pytest

from pqc.mqtt_front import (
    CONNECT,
    PUBLISH,
    SUBSCRIBE,
    MqttGuard,
    MqttMalformed,
    MqttViolation,
    split_packets,
)

VIN = "WVWZZZ1JZXW000001"
OTHER = "WVWZZZ1JZXW000002"


def _s(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _props(*items: bytes) -> bytes:
    body = b"".join(items)
    return bytes([len(body)]) + body


def connect_body(client_id: str, level: int = 4) -> bytes:
    body = _s("MQTT") + bytes([level, 0x02]) + (30).to_bytes(2, "big")
    if level == 5:
        body += _props()
    return body + _s(client_id)


def publish_body(topic: str, *, level: int = 4, qos: int = 0, props: bytes = b"") -> bytes:
    body = _s(topic) + ((1).to_bytes(2, "big") if qos else b"")
    if level == 5:
        body += _props(props)
    return body + b"payload"


def subscribe_body(*filters: str, level: int = 4) -> bytes:
    body = (7).to_bytes(2, "big") + (_props() if level == 5 else b"")
    return body + b"".join(_s(f) + b"\x01" for f in filters)


def connected(level: int = 4) -> MqttGuard:
    guard = MqttGuard(vin=VIN)
    guard.check(CONNECT, 0, connect_body(VIN, level))
    return guard


def test_connect_with_the_certificate_vin_passes() -> None:
    assert connected().protocol_level == 4


@pytest.mark.parametrize("client_id", [OTHER, "", VIN.lower(), VIN + "x"])
def test_connect_with_any_other_client_id_is_refused_with_not_authorized(client_id: str) -> None:
    guard = MqttGuard(vin=VIN)
    with pytest.raises(MqttViolation, match="client id"):
        guard.check(CONNECT, 0, connect_body(client_id))
    assert guard.refusal(CONNECT) == bytes([0x20, 2, 0, 5])


def test_mqtt5_refusal_uses_reason_code_not_authorized() -> None:
    guard = MqttGuard(vin=VIN)
    with pytest.raises(MqttViolation):
        guard.check(CONNECT, 0, connect_body(OTHER, level=5))
    assert guard.refusal(CONNECT) == bytes([0x20, 3, 0, 0x87, 0])


def test_first_packet_must_be_connect() -> None:
    with pytest.raises(MqttViolation, match="first packet"):
        MqttGuard(vin=VIN).check(PUBLISH, 0, publish_body(f"vehicle/{VIN}/status"))


def test_second_connect_is_refused() -> None:
    with pytest.raises(MqttViolation, match="second CONNECT"):
        connected().check(CONNECT, 0, connect_body(VIN))


@pytest.mark.parametrize("qos", [0, 1])
def test_publish_under_own_prefix_passes(qos: int) -> None:
    connected().check(PUBLISH, qos << 1, publish_body(f"vehicle/{VIN}/status", qos=qos))


@pytest.mark.parametrize(
    "topic",
    [f"vehicle/{OTHER}/status", f"vehicle/{VIN}", "vehicle/status", f"vehicle/{VIN}/+",
     f"vehicle/{VIN}/#", f"xvehicle/{VIN}/a", f"vehicle/{VIN}x/a"],
)  # fmt: skip
def test_publish_outside_own_prefix_or_with_wildcards_is_refused(topic: str) -> None:
    with pytest.raises(MqttViolation):
        connected().check(PUBLISH, 0, publish_body(topic))


def test_mqtt5_topic_alias_cannot_smuggle_another_topic() -> None:
    guard = connected(level=5)
    alias = bytes([0x23]) + (1).to_bytes(2, "big")
    guard.check(PUBLISH, 0, publish_body(f"vehicle/{VIN}/a", level=5, props=alias))
    guard.check(PUBLISH, 0, publish_body("", level=5, props=alias))  # reuses own topic
    with pytest.raises(MqttViolation):
        guard.check(PUBLISH, 0, publish_body(f"vehicle/{OTHER}/a", level=5, props=alias))
    unknown = bytes([0x23]) + (2).to_bytes(2, "big")
    with pytest.raises(MqttViolation, match="never set"):
        guard.check(PUBLISH, 0, publish_body("", level=5, props=unknown))


def test_mqtt5_response_topic_must_stay_under_own_prefix() -> None:
    response = bytes([0x08]) + _s(f"vehicle/{OTHER}/reply")
    with pytest.raises(MqttViolation, match="response topic"):
        connected(level=5).check(PUBLISH, 0, publish_body(f"vehicle/{VIN}/q", level=5,
                                                          props=response))  # fmt: skip


@pytest.mark.parametrize("level", [4, 5])
def test_subscribe_to_own_tree_with_wildcards_passes(level: int) -> None:
    connected(level).check(
        SUBSCRIBE, 2, subscribe_body(f"vehicle/{VIN}/#", f"vehicle/{VIN}/+/x", level=level)
    )


@pytest.mark.parametrize(
    "topic_filter",
    ["#", "+/+/#", "vehicle/+/commands", f"vehicle/{OTHER}/#", f"$share/g/vehicle/{VIN}/#",
     "$SYS/#", f"vehicle/{VIN}"],
)  # fmt: skip
def test_subscribe_outside_own_tree_is_refused(topic_filter: str) -> None:
    with pytest.raises(MqttViolation):
        connected().check(SUBSCRIBE, 2, subscribe_body(f"vehicle/{VIN}/ok", topic_filter))


def test_truncated_packet_is_malformed() -> None:
    with pytest.raises(MqttMalformed):
        connected().check(PUBLISH, 0, b"\x00\x30vehicle/")


def test_split_packets_waits_for_complete_packets_and_caps_their_size() -> None:
    raw = bytes([0xC0, 0])  # PINGREQ
    buf = bytearray(raw + bytes([0x30, 5]) + b"ab")
    assert split_packets(buf, 1024) == [(12, 0, b"", raw)]
    assert buf == bytearray([0x30, 5]) + b"ab"
    with pytest.raises(MqttViolation, match="exceeds"):
        split_packets(bytearray([0x30, 0xFF, 0xFF, 0x7F]), 1024)
