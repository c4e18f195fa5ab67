from __future__ import annotations

import pytest

from pqc.mqtt_front import (
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBLISH,
    PUBREL,
    SUBSCRIBE,
    UNSUBSCRIBE,
    MqttGuard,
    MqttMalformed,
    MqttViolation,
    connect_with_credentials,
    split_packets,
)

VIN = "WVWZZZ1JZXW000001"
OTHER = "WVWZZZ1JZXW000002"
STATUS = f"vehicle/{VIN}/status"
CONTROL = f"vehicle/{VIN}/control"


def _s(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _props(*items: bytes) -> bytes:
    body = b"".join(items)
    return bytes([len(body)]) + body


def response_topic(topic: str) -> bytes:
    return bytes([0x08]) + _s(topic)


def connect_body(
    client_id: str,
    level: int = 4,
    *,
    flags: int = 0x02,
    keep_alive: int = 30,
    will: tuple[str, bytes] | None = None,
    will_qos: int = 1,
    will_retain: bool = False,
    will_props: bytes = b"",
    connect_props: bytes = b"",
    username: str | None = None,
    password: bytes | None = None,
) -> bytes:
    if will is not None:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    name = "MQIsdp" if level == 3 else "MQTT"
    body = _s(name) + bytes([level, flags]) + keep_alive.to_bytes(2, "big")
    if level == 5:
        body += _props(connect_props)
    body += _s(client_id)
    if will is not None:
        if level == 5:
            body += _props(will_props)
        body += _s(will[0]) + len(will[1]).to_bytes(2, "big") + will[1]
    if username is not None:
        body += _s(username)
    if password is not None:
        body += len(password).to_bytes(2, "big") + password
    return body


def publish_body(topic: str, *, level: int = 4, qos: int = 0, props: bytes = b"") -> bytes:
    body = _s(topic) + ((1).to_bytes(2, "big") if qos else b"")
    if level == 5:
        body += _props(props)
    return body + b"payload"


def publish_flags(*, qos: int = 0, retain: bool = False, dup: bool = False) -> int:
    return (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)


def subscribe_body(*filters: str, level: int = 4, options: int = 0x01) -> bytes:
    body = (7).to_bytes(2, "big") + (_props() if level == 5 else b"")
    return body + b"".join(_s(f) + bytes([options]) for f in filters)


def unsubscribe_body(*filters: str, level: int = 4) -> bytes:
    body = (8).to_bytes(2, "big") + (_props() if level == 5 else b"")
    return body + b"".join(_s(f) for f in filters)


def connected(level: int = 4, root: str = "vehicle") -> MqttGuard:
    guard = MqttGuard(vin=VIN, root=root)
    guard.check(CONNECT, 0, connect_body(VIN, level))
    return guard


def refused_at_connect(body: bytes, match: str | None = None) -> MqttGuard:
    guard = MqttGuard(vin=VIN)
    with pytest.raises(MqttViolation, match=match) as caught:
        guard.check(CONNECT, 0, body)
    guard.last_error = caught.value  # type: ignore[attr-defined]
    return guard


# CONNECT -------------------------------------------------------------------------------------


def test_connect_with_the_certificate_vin_passes() -> None:
    guard = connected()
    assert guard.protocol_level == 4
    assert guard.keep_alive == 30


@pytest.mark.parametrize("client_id", [OTHER, "", VIN.lower(), VIN + "x"])
def test_connect_with_any_other_client_id_is_refused_with_not_authorized(client_id: str) -> None:
    guard = refused_at_connect(connect_body(client_id), "client id")
    assert guard.refusal(CONNECT) == bytes([0x20, 2, 0, 5])


def test_mqtt5_refusal_uses_reason_code_not_authorized() -> None:
    guard = refused_at_connect(connect_body(OTHER, level=5))
    assert guard.refusal(CONNECT) == bytes([0x20, 3, 0, 0x87, 0])


def test_first_packet_must_be_connect() -> None:
    with pytest.raises(MqttViolation, match="first packet"):
        MqttGuard(vin=VIN).check(PUBLISH, 0, publish_body(STATUS))


def test_second_connect_is_refused() -> None:
    with pytest.raises(MqttViolation, match="second CONNECT"):
        connected().check(CONNECT, 0, connect_body(VIN))


@pytest.mark.parametrize("level", [4, 5])
def test_connect_reserved_flag_is_malformed_and_refused_in_the_clients_version(level: int) -> None:
    guard = refused_at_connect(connect_body(VIN, level, flags=0x03), "reserved")
    assert guard.refusal(CONNECT) in {bytes([0x20, 2, 0, 5]), bytes([0x20, 3, 0, 0x87, 0])}
    assert guard.protocol_level == level


@pytest.mark.parametrize("level", [4, 5])
def test_connect_carrying_broker_credentials_is_refused(level: int) -> None:
    refused_at_connect(connect_body(VIN, level, username="bridge"), "credentials")
    refused_at_connect(connect_body(VIN, 5, password=b"secret"), "credentials")


def test_connect_with_enhanced_authentication_is_refused() -> None:
    method = bytes([0x15]) + _s("SCRAM-SHA-1")
    refused_at_connect(connect_body(VIN, 5, connect_props=method), "authentication")


def test_unknown_protocol_level_is_refused_as_unacceptable_version() -> None:
    guard = refused_at_connect(connect_body(VIN, 6), "protocol")
    assert guard.refusal(CONNECT) == bytes([0x20, 2, 0, 1])


def test_mqtt31_connect_is_understood() -> None:
    guard = MqttGuard(vin=VIN)
    guard.check(CONNECT, 0, connect_body(VIN, 3))
    assert guard.protocol_level == 3


# The will -------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [4, 5])
def test_will_on_own_status_topic_retained_passes(level: int) -> None:
    guard = MqttGuard(vin=VIN)
    guard.check(CONNECT, 0, connect_body(VIN, level, will=(STATUS, b"{}"), will_retain=True))


@pytest.mark.parametrize("level", [4, 5])
@pytest.mark.parametrize(
    "topic",
    [f"vehicle/{OTHER}/control", f"vehicle/{OTHER}/desired-state", f"vehicle/{OTHER}/ota/status",
     f"vehicle/{OTHER}/status", CONTROL, f"vehicle/{VIN}/desired-state",
     f"vehicle/{VIN}/diagnostics", f"vehicle/{VIN}/other", f"vehicle/{VIN}/#", "$SYS/x", ""],
)  # fmt: skip
def test_will_on_any_topic_the_vehicle_may_not_publish_is_refused(topic: str, level: int) -> None:
    guard = refused_at_connect(connect_body(VIN, level, will=(topic, b"{}")), "will")
    assert guard.refusal(CONNECT) in {bytes([0x20, 2, 0, 5]), bytes([0x20, 3, 0, 0x87, 0])}


def test_retained_will_outside_the_status_topic_is_refused() -> None:
    will = (f"vehicle/{VIN}/ota/status", b"{}")
    refused_at_connect(connect_body(VIN, will=will, will_retain=True), "retain")


def test_will_qos_3_is_malformed() -> None:
    with pytest.raises(MqttMalformed, match="QoS"):
        MqttGuard(vin=VIN).check(CONNECT, 0, connect_body(VIN, will=(STATUS, b"{}"), will_qos=3))


def test_will_qos_or_retain_without_a_will_is_malformed() -> None:
    with pytest.raises(MqttMalformed, match="will"):
        MqttGuard(vin=VIN).check(CONNECT, 0, connect_body(VIN, flags=0x02 | 0x08))
    with pytest.raises(MqttMalformed, match="will"):
        MqttGuard(vin=VIN).check(CONNECT, 0, connect_body(VIN, flags=0x02 | 0x20))


def test_will_response_topic_must_be_one_of_the_vehicles_own_inbox_topics() -> None:
    own = response_topic(CONTROL)
    MqttGuard(vin=VIN).check(CONNECT, 0, connect_body(VIN, 5, will=(STATUS, b"{}"), will_props=own))
    for topic in (f"vehicle/{OTHER}/control", STATUS, f"vehicle/{VIN}/#"):
        props = response_topic(topic)
        refused_at_connect(
            connect_body(VIN, 5, will=(STATUS, b"{}"), will_props=props), "response topic"
        )


def test_will_with_a_property_that_is_not_a_will_property_is_malformed() -> None:
    alias = bytes([0x23]) + (1).to_bytes(2, "big")
    with pytest.raises(MqttMalformed, match="property"):
        MqttGuard(vin=VIN).check(
            CONNECT, 0, connect_body(VIN, 5, will=(STATUS, b"{}"), will_props=alias)
        )


def test_will_binary_correlation_data_is_accepted() -> None:
    correlation = bytes([0x09]) + (2).to_bytes(2, "big") + b"\xff\xfe"
    MqttGuard(vin=VIN).check(
        CONNECT, 0, connect_body(VIN, 5, will=(STATUS, b"{}"), will_props=correlation)
    )


# PUBLISH: only the vehicle -> server topics --------------------------------------------------


@pytest.mark.parametrize("kind", ["telemetry", "status", "ota/status", "control/response",
                                  "diagnostics/response"])  # fmt: skip
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_on_each_vehicle_to_server_topic_passes(kind: str, qos: int) -> None:
    connected().check(
        PUBLISH, publish_flags(qos=qos), publish_body(f"vehicle/{VIN}/{kind}", qos=qos)
    )


@pytest.mark.parametrize(
    "topic",
    [f"vehicle/{OTHER}/status", f"vehicle/{VIN}", "vehicle/status", f"vehicle/{VIN}/+",
     f"vehicle/{VIN}/#", f"xvehicle/{VIN}/status", f"vehicle/{VIN}x/status", CONTROL,
     f"vehicle/{VIN}/desired-state", f"vehicle/{VIN}/diagnostics", f"vehicle/{VIN}/status/x",
     f"vehicle/{VIN}/commands", "$SYS/broker", f"vehicle/{VIN}/status\x00"],
)  # fmt: skip
def test_publish_on_any_other_topic_is_refused(topic: str) -> None:
    with pytest.raises(MqttViolation):
        connected().check(PUBLISH, 0, publish_body(topic))


def test_retained_publish_only_on_the_status_topic() -> None:
    guard = connected()
    guard.check(PUBLISH, publish_flags(qos=1, retain=True), publish_body(STATUS, qos=1))
    with pytest.raises(MqttViolation, match="retain"):
        guard.check(
            PUBLISH,
            publish_flags(qos=1, retain=True),
            publish_body(f"vehicle/{VIN}/telemetry", qos=1),
        )


def test_publish_qos_3_is_malformed() -> None:
    with pytest.raises(MqttMalformed, match="QoS"):
        connected().check(PUBLISH, 0x06, publish_body(STATUS, qos=1))


def test_publish_dup_at_qos_0_is_malformed() -> None:
    with pytest.raises(MqttMalformed, match="DUP"):
        connected().check(PUBLISH, publish_flags(dup=True), publish_body(STATUS))


def test_topic_root_from_settings_replaces_vehicle() -> None:
    guard = connected(root="fleet-7")
    guard.check(PUBLISH, 0, publish_body(f"fleet-7/{VIN}/status"))
    guard.check(SUBSCRIBE, 2, subscribe_body(f"fleet-7/{VIN}/control"))
    with pytest.raises(MqttViolation):
        guard.check(PUBLISH, 0, publish_body(STATUS))


def test_mqtt5_topic_alias_cannot_smuggle_another_topic() -> None:
    guard = connected(level=5)
    alias = bytes([0x23]) + (1).to_bytes(2, "big")
    guard.check(PUBLISH, 0, publish_body(STATUS, level=5, props=alias))
    guard.check(PUBLISH, 0, publish_body("", level=5, props=alias))  # reuses own topic
    with pytest.raises(MqttViolation):
        guard.check(PUBLISH, 0, publish_body(f"vehicle/{OTHER}/status", level=5, props=alias))
    unknown = bytes([0x23]) + (2).to_bytes(2, "big")
    with pytest.raises(MqttViolation, match="never set"):
        guard.check(PUBLISH, 0, publish_body("", level=5, props=unknown))


def test_mqtt5_topic_alias_remapped_to_another_allowed_topic_follows_it() -> None:
    guard = connected(level=5)
    alias = bytes([0x23]) + (1).to_bytes(2, "big")
    guard.check(PUBLISH, 0, publish_body(STATUS, level=5, props=alias))
    telemetry = f"vehicle/{VIN}/telemetry"
    guard.check(PUBLISH, 0, publish_body(telemetry, level=5, props=alias))
    # The alias now means telemetry, which may not be retained.
    with pytest.raises(MqttViolation, match="retain"):
        guard.check(PUBLISH, publish_flags(retain=True), publish_body("", level=5, props=alias))


def test_mqtt5_refused_topic_never_becomes_an_alias() -> None:
    guard = connected(level=5)
    alias = bytes([0x23]) + (1).to_bytes(2, "big")
    with pytest.raises(MqttViolation):
        guard.check(PUBLISH, 0, publish_body(CONTROL, level=5, props=alias))
    assert guard.aliases == {}


def test_mqtt5_topic_alias_zero_is_malformed() -> None:
    alias = bytes([0x23]) + (0).to_bytes(2, "big")
    with pytest.raises(MqttMalformed, match="alias"):
        connected(level=5).check(PUBLISH, 0, publish_body(STATUS, level=5, props=alias))


def test_mqtt5_response_topic_must_be_one_of_the_vehicles_own_inbox_topics() -> None:
    guard = connected(level=5)
    guard.check(PUBLISH, 0, publish_body(STATUS, level=5, props=response_topic(CONTROL)))
    for topic in (f"vehicle/{OTHER}/control", f"vehicle/{VIN}/telemetry"):
        with pytest.raises(MqttViolation, match="response topic"):
            connected(level=5).check(
                PUBLISH, 0, publish_body(STATUS, level=5, props=response_topic(topic))
            )


def test_mqtt5_subscription_identifier_on_publish_is_malformed() -> None:
    with pytest.raises(MqttMalformed, match="property"):
        connected(level=5).check(PUBLISH, 0, publish_body(STATUS, level=5, props=b"\x0b\x01"))


# SUBSCRIBE and UNSUBSCRIBE: only the server -> vehicle topics --------------------------------


@pytest.mark.parametrize("level", [4, 5])
def test_subscribe_to_own_server_to_vehicle_topics_passes(level: int) -> None:
    topics = [f"vehicle/{VIN}/{k}" for k in ("control", "diagnostics", "desired-state")]
    connected(level).check(SUBSCRIBE, 2, subscribe_body(*topics, level=level))


@pytest.mark.parametrize(
    "topic_filter",
    ["#", "+/+/#", "vehicle/+/control", f"vehicle/{OTHER}/#", f"vehicle/{OTHER}/control",
     f"$share/g/vehicle/{VIN}/control", "$SYS/#", f"vehicle/{VIN}", f"vehicle/{VIN}/#",
     f"vehicle/{VIN}/+", STATUS, f"vehicle/{VIN}/telemetry", f"vehicle/{VIN}/control/response"],
)  # fmt: skip
def test_subscribe_to_anything_else_is_refused(topic_filter: str) -> None:
    with pytest.raises(MqttViolation):
        connected().check(SUBSCRIBE, 2, subscribe_body(CONTROL, topic_filter))


def test_subscribe_with_qos_3_or_reserved_option_bits_is_malformed() -> None:
    with pytest.raises(MqttMalformed):
        connected().check(SUBSCRIBE, 2, subscribe_body(CONTROL, options=0x03))
    with pytest.raises(MqttMalformed):
        connected().check(SUBSCRIBE, 2, subscribe_body(CONTROL, options=0x05))
    with pytest.raises(MqttMalformed):
        connected(5).check(SUBSCRIBE, 2, subscribe_body(CONTROL, level=5, options=0x41))


def test_subscribe_with_wrong_fixed_header_flags_is_malformed() -> None:
    with pytest.raises(MqttMalformed, match="flags"):
        connected().check(SUBSCRIBE, 0, subscribe_body(CONTROL))


def test_unsubscribe_from_own_topic_passes_and_from_others_is_refused() -> None:
    guard = connected()
    guard.check(UNSUBSCRIBE, 2, unsubscribe_body(CONTROL))
    for topic_filter in (f"$share/g/vehicle/{VIN}/control", "#", f"vehicle/{OTHER}/control"):
        with pytest.raises(MqttViolation):
            connected().check(UNSUBSCRIBE, 2, unsubscribe_body(topic_filter))
    with pytest.raises(MqttMalformed):
        connected().check(UNSUBSCRIBE, 2, unsubscribe_body())


# Other packets ---------------------------------------------------------------------------------


def test_acknowledgements_pings_and_disconnect_pass() -> None:
    guard = connected()
    guard.check(PUBACK, 0, (1).to_bytes(2, "big"))
    guard.check(PUBREL, 2, (1).to_bytes(2, "big"))
    guard.check(PINGREQ, 0, b"")
    guard.check(DISCONNECT, 0, b"")


@pytest.mark.parametrize("packet_type", [0, 2, 9, 11, 13])
def test_server_only_packet_types_are_malformed(packet_type: int) -> None:
    with pytest.raises(MqttMalformed):
        connected().check(packet_type, 0, b"")


def test_auth_packet_is_refused() -> None:
    with pytest.raises(MqttViolation):
        connected(5).check(15, 0, b"\x00\x00")


def test_truncated_packet_is_malformed() -> None:
    with pytest.raises(MqttMalformed):
        connected().check(PUBLISH, 0, b"\x00\x30vehicle/")


def test_refusal_after_connect_is_disconnect_not_authorized_on_mqtt5() -> None:
    guard = connected(5)
    assert guard.refusal(PUBLISH) == bytes([0xE0, 2, 0x87, 0])
    assert connected(4).refusal(PUBLISH) == b""


def test_split_packets_waits_for_complete_packets_and_caps_their_size() -> None:
    raw = bytes([0xC0, 0])  # PINGREQ
    buf = bytearray(raw + bytes([0x30, 5]) + b"ab")
    assert split_packets(buf, 1024) == [(12, 0, b"", raw)]
    assert buf == bytearray([0x30, 5]) + b"ab"
    with pytest.raises(MqttViolation, match="exceeds"):
        split_packets(bytearray([0x30, 0xFF, 0xFF, 0x7F]), 1024)


def test_remaining_length_longer_than_four_bytes_is_malformed() -> None:
    with pytest.raises(MqttMalformed, match="remaining length"):
        split_packets(bytearray([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]), 1 << 30)


# The CONNECT the broker sees -------------------------------------------------------------------


def mqtt_packet(packet_type: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([packet_type << 4]) + bytes(encoded) + body


@pytest.mark.parametrize("level", [4, 5])
def test_connect_is_rewritten_with_the_fronts_own_broker_credentials(level: int) -> None:
    original = connect_body(VIN, level, will=(STATUS, b"{}"), will_retain=True)
    rewritten = connect_with_credentials(mqtt_packet(CONNECT, original), "front", "s3cret")
    expected = connect_body(
        VIN, level, will=(STATUS, b"{}"), will_retain=True, username="front", password=b"s3cret"
    )
    assert rewritten == mqtt_packet(CONNECT, expected)
    (packet,) = split_packets(bytearray(rewritten), 1024)
    assert packet[2] == expected


def test_connect_is_passed_unchanged_when_the_broker_needs_no_credentials() -> None:
    raw = mqtt_packet(CONNECT, connect_body(VIN))
    assert connect_with_credentials(raw, None, None) == raw


def test_connect_rewrite_grows_the_remaining_length_field() -> None:
    long_password = "p" * 200
    raw = mqtt_packet(CONNECT, connect_body(VIN))
    rewritten = connect_with_credentials(raw, "front", long_password)
    (packet,) = split_packets(bytearray(rewritten), 4096)
    assert packet[2].endswith(_s("front") + _s(long_password))
