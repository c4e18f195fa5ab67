"""The drill's record of acknowledged messages must not stop the vehicle it watches.

With the record's lock held across paho's `publish`, a publishing thread and paho's network
thread (which holds its outgoing-message lock while it reports a PUBACK) waited for each other:
in one drill run in four a vehicle stopped sending, never reconnected and ignored SIGTERM.
"""

from __future__ import annotations

import threading
import time

import pytest

from core.mqtt.testing_broker import PrivateMosquitto
from ota.tests.fault_drill import AckLedger
from simulator.vehicle import SimulatedVehicle, VehicleConfig

pytestmark = pytest.mark.slow

MESSAGES_PER_THREAD = 1500


@pytest.fixture
def broker():
    mosquitto = PrivateMosquitto()
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.cleanup()


def test_publishers_and_acknowledgements_never_wait_for_each_other(broker):
    ledger = AckLedger()
    vehicle = SimulatedVehicle(VehicleConfig(vin="WVWZZZ1JZ3W386752", port=broker.port))
    ledger.watch(vehicle)
    vehicle.start()
    assert vehicle.connected.wait(10)

    def send(kind: str) -> None:
        for _ in range(MESSAGES_PER_THREAD):
            if kind == "telemetry":
                vehicle.send_telemetry()
            else:
                vehicle.send_ota_status(update_id=1, vmg_state=3)

    senders = [threading.Thread(target=send, args=(k,), daemon=True) for k in ("telemetry", "s")]
    try:
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(30)
        assert not any(s.is_alive() for s in senders), "a publisher is stuck"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            record = ledger.record()
            if len(record["telemetry"]) + len(record["reports"]) == 2 * MESSAGES_PER_THREAD:
                break
            time.sleep(0.1)
    finally:
        # A deadlocked client never stops: stop it aside so the test fails instead of hanging.
        stopper = threading.Thread(target=vehicle.stop, daemon=True)
        stopper.start()
        stopper.join(10)
    record = ledger.record()
    assert sorted(record["telemetry"]) == list(range(1, MESSAGES_PER_THREAD + 1))
    assert len(set(record["reports"])) == MESSAGES_PER_THREAD
