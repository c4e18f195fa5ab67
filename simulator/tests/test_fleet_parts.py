"""Fleet mode's pure parts: MQTT framing, the configuration mix, fault rates."""

from __future__ import annotations

import argparse
import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from pqc.catalogue import load_catalogue
from pqc.pki import PkiError
from simulator.fleet.mqtt import (
    PUBLISH,
    MqttError,
    connect_packet,
    packet,
    publish_packet,
    split_packets,
)
from simulator.fleet.runner import CATALOGUE, assign, failure, rate, shard
from simulator.fleet.vehicle import Faults, FleetServer, FleetVehicle
from simulator.https import HttpsError, Response


def test_packets_split_at_their_boundaries_across_reads() -> None:
    big = publish_packet("vehicle/V/telemetry", b"x" * 300, packet_id=7, retain=True)
    stream = connect_packet("V", keepalive=60, will_topic="t", will_payload=b"w", clean=False)
    stream += big + packet(13, 0, b"")
    buffer = bytearray()
    seen = []
    for index in range(0, len(stream), 5):  # five bytes per read
        buffer += stream[index : index + 5]
        seen += split_packets(buffer)
    assert [kind for kind, _, _ in seen] == [1, PUBLISH, 13]
    # Two-byte remaining length (300 > 127), QoS 1 and retain flags, packet id after the topic.
    kind, flags, body = seen[1]
    assert flags == 0x03 and body.endswith(b"x" * 300) and body[21:23] == b"\x00\x07"
    assert not buffer


def test_a_remaining_length_longer_than_four_bytes_is_refused() -> None:
    with pytest.raises(MqttError, match="remaining length"):
        split_packets(bytearray(b"\x30\xff\xff\xff\xff\xff"))


def test_vehicles_take_the_mix_and_a_certificate_of_their_configurations_family() -> None:
    manifest = [
        {"vin": f"V{i}", "family": "ecdsa-p256" if i % 2 else "ml-dsa-65"} for i in range(6)
    ]
    fleet = assign(4, "1:50,13:50", manifest, load_catalogue(CATALOGUE))
    assert [(vin, config.id) for vin, config in fleet] == [
        ("V1", 1), ("V0", 13), ("V3", 1), ("V2", 13),
    ]  # fmt: skip
    with pytest.raises(PkiError, match="not enough ecdsa-p256 certificates"):
        assign(6, "1", manifest, load_catalogue(CATALOGUE))


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [(rate, "2%", 0.02), (rate, "0.5", 0.5), (failure, "boot:5%", ("boot", 0.05)),
     (shard, "1/4", (1, 4))],
)  # fmt: skip
def test_options_parse(parse, text, value) -> None:
    assert parse(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("parse", "text"), [(rate, "150%"), (failure, "flash:2%"), (shard, "4/4"), (shard, "x")]
)
def test_bad_options_are_refused_naming_the_value(parse, text) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=text.split(":")[0].split("/")[0]):
        parse(text)


class _ScriptedApi:
    """The vehicle API as a fleet vehicle sees it: answers (or errors) in the order given."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str, Any]] = []

    async def send(self, method: str, path: str, *, json: Any = None) -> Response:
        self.sent.append((method, path, json))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        pass


def _fleet_vehicle(api: _ScriptedApi) -> FleetVehicle:
    shared = SimpleNamespace(
        server=FleetServer(),
        https_slots=asyncio.Semaphore(1),
        model_name="Aurora",
        model_year=2026,
    )
    vehicle = FleetVehicle(
        SimpleNamespace(vin="WFLEET00000000001"), SimpleNamespace(id=1), shared, Faults()
    )
    vehicle.https = api
    return vehicle


def test_a_final_report_lost_on_the_way_is_sent_again_unchanged_not_checked_again() -> None:
    # The vehicle runs the new software; only its report did not get through. Checking again
    # would find no offer (the server may already hold the report) and lose the outcome.
    api = _ScriptedApi(HttpsError(0, "connection reset"), Response(200, {}, b"{}"))
    vehicle = _fleet_vehicle(api)
    vcis: list[str] = []

    async def send_vci(trigger: str) -> dict:
        vcis.append(trigger)
        return {"snapshot_id": 1}

    vehicle.send_vci = send_vci  # type: ignore[method-assign]
    running = {"ECU_001": "2.0.0"}
    vehicle._unconfirmed = {
        "attempt": 1,
        "running": running,
        "report": vehicle._report_document(7, 6, running_versions=running),
    }

    asyncio.run(vehicle.run_update(retry_seconds=0))

    assert [path for _, path, _ in api.sent] == ["/api/v1/ota/status"] * 2
    assert api.sent[0][2] == api.sent[1][2]  # same report id and sequence: acknowledged once
    assert vcis == ["post_update"]
    assert vehicle.outcomes == [{"update_id": 7, "result": "succeeded", "running": running}]
    assert vehicle.update_errors == ["connection reset"]
    assert (7, 1) in vehicle.finished_offers
    assert vehicle.saved_state()["unconfirmed"] is None


def test_a_session_that_times_out_is_tried_again_not_given_up() -> None:
    api = _ScriptedApi()
    api.call = lambda *a, **k: _answer({})  # type: ignore[attr-defined]
    vehicle = _fleet_vehicle(api)
    vehicle.send_vci = lambda trigger: _answer({})  # type: ignore[method-assign]
    sessions: list[int] = []

    async def session(stop: asyncio.Event) -> None:
        sessions.append(1)
        if len(sessions) == 1:
            raise TimeoutError  # the CONNACK never came
        stop.set()

    vehicle._mqtt_session = session  # type: ignore[method-assign]

    async def run() -> None:
        stop = asyncio.Event()
        await asyncio.wait_for(vehicle.run(stop), timeout=10)

    asyncio.run(run())
    assert len(sessions) == 2
    assert vehicle.error == "mqtt: TimeoutError"


async def _answer(value: Any) -> Any:
    return value
