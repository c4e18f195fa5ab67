"""The simulated vehicle's MQTT side: presence, telemetry, control, OTA status, desired state
and UDS relay. With an update agent (`simulator.ota.OtaAgent`) it also carries out updates."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes

from simulator.ecus import SimulatedEcu, answers
from simulator.ota import OtaAgent

logger = logging.getLogger("simulator")


@dataclass
class VehicleConfig:
    vin: str
    host: str = "127.0.0.1"
    port: int = 1883
    topic_root: str = "vehicle"
    protocol: int = mqtt.MQTTv5
    telemetry_interval: float = 10.0
    answer_rule: str = "all"
    keepalive: int = 30


@dataclass
class SimulatedVehicle:
    config: VehicleConfig
    ecus: dict[str, SimulatedEcu] = field(default_factory=dict)
    desired_state: dict[str, Any] | None = None
    seq: int = 0
    ota_sequence: int = 0
    handled: list[str] = field(default_factory=list)
    # The update agent (HTTPS); without one the vehicle cannot download and refuses to.
    ota: OtaAgent | None = None

    def __post_init__(self) -> None:
        cfg = self.config
        kwargs: dict[str, Any] = {"client_id": cfg.vin, "protocol": cfg.protocol}
        if cfg.protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        # The broker announces our disappearance on our own status topic.
        self.client.will_set(
            self.topic("status"),
            json.dumps({"vin": cfg.vin, "state": "offline", "reason": "connection lost"}),
            qos=1,
            retain=True,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        # Why the first session did not come about (CONNACK refusal, connection closed before
        # a CONNACK, nobody listening); empty until then.
        self.refusal = ""
        self._stop = threading.Event()

    def topic(self, kind: str) -> str:
        return f"{self.config.topic_root}/{self.config.vin}/{kind}"

    def ecu(self, ecu_id: str) -> SimulatedEcu:
        if ecu_id not in self.ecus:
            self.ecus[ecu_id] = SimulatedEcu(ecu_id=ecu_id, vin=self.config.vin)
        return self.ecus[ecu_id]

    # connection ------------------------------------------------------------------------

    def start(self) -> SimulatedVehicle:
        props = None
        if self.config.protocol == mqtt.MQTTv5:
            props = mqtt.Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self.client.connect_async(
                self.config.host,
                self.config.port,
                self.config.keepalive,
                clean_start=False,
                properties=props,
            )
        else:
            self.client.connect_async(self.config.host, self.config.port, self.config.keepalive)
        self.client.loop_start()
        return self

    def stop(self, *, graceful: bool = True) -> None:
        self._stop.set()
        if graceful and self.client.is_connected():
            info = self.publish(
                "status",
                {"vin": self.config.vin, "state": "offline", "reason": "shutdown"},
                retain=True,
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            logger.error("connect refused: %s", reason)
            self.refusal = f"the broker refused the connection: {reason}"
            return
        client.subscribe(
            [
                (self.topic("control"), 1),
                (self.topic("diagnostics"), 1),
                (self.topic("desired-state"), 1),
            ]
        )
        self.publish("status", {"vin": self.config.vin, "state": "online"}, retain=True)
        self.connected.set()
        logger.info("%s connected", self.config.vin)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self.connected.is_set():
            self.refusal = self.refusal or "nothing accepts connections there"

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if not self.connected.is_set() and not self._stop.is_set():
            # An MQTT 3.1.1-only broker (amqtt, the embedded one) drops an MQTT 5 CONNECT so.
            self.refusal = self.refusal or "the connection was closed before a CONNACK"

    def wait_connected(self, timeout: float) -> str:
        """Wait for the first session: "" once connected, else why there is none."""
        deadline = time.monotonic() + timeout
        while not self.connected.is_set():
            remaining = deadline - time.monotonic()
            if self.refusal or remaining <= 0:
                return self.refusal or f"no CONNACK within {timeout:g} s"
            self.connected.wait(min(remaining, 0.05))
        return ""

    def publish(
        self, kind: str, document: dict[str, Any], *, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        return self.client.publish(self.topic(kind), json.dumps(document), qos=1, retain=retain)

    # vehicle -> server -----------------------------------------------------------------

    def send_telemetry(self, **values: Any) -> mqtt.MQTTMessageInfo:
        self.seq += 1
        return self.publish("telemetry", telemetry_document(self.config.vin, self.seq, values))

    def send_ota_status(self, **report: Any) -> mqtt.MQTTMessageInfo:
        self.ota_sequence += 1
        document = {
            "vin": self.config.vin,
            "report_id": uuid.uuid4().hex,
            "sequence": self.ota_sequence,
            "timestamp": int(time.time()),
            **report,
        }
        return self.publish("ota/status", document)

    def run_telemetry(self, *, count: int | None = None) -> None:
        """Report telemetry every interval until stopped (or `count` messages are sent)."""
        sent = 0
        while not self._stop.is_set() and (count is None or sent < count):
            if self.connected.is_set():
                self.send_telemetry()
                sent += 1
            self._stop.wait(self.config.telemetry_interval)

    # server -> vehicle -----------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            document = json.loads(message.payload)
        except ValueError:
            logger.warning("ignoring non-JSON message on %s", message.topic)
            return
        kind = message.topic.removeprefix(f"{self.config.topic_root}/{self.config.vin}/")
        self.handled.append(kind)
        if kind == "control":
            threading.Thread(target=self._control, args=(document,), daemon=True).start()
        elif kind == "diagnostics":
            self._diagnostics(document)
        elif kind == "desired-state":
            self.desired_state = document
            pending = document.get("pending_update")
            logger.info("%s desired state: %s", self.config.vin, pending)
            if self.ota is not None:
                if pending and self.ota.has_finished(pending):
                    # The retained offer comes again at every reconnect: one already carried
                    # to its outcome is not run again.
                    logger.info("%s: offer %s already finished", self.config.vin, pending)
                elif pending:
                    # The update check tells whether there is still work to do.
                    self.ota.start_in_background("desired state")
                else:
                    self.ota.stop()

    def _respond(self, command: dict[str, Any], status: str, **extra: Any) -> None:
        self.publish(
            "control/response",
            {
                "command_id": command["command_id"],
                "vin": self.config.vin,
                "status": status,
                **extra,
            },
        )

    def _control(self, command: dict[str, Any]) -> None:
        name = command.get("command")
        self._respond(command, "accepted")
        params = command.get("params") or {}
        if name == "collect_readiness":
            self._respond(command, "completed", result=READINESS)
        elif name == "collect_vci":
            ecus = [{"ecu_id": e.ecu_id, "sw_version": e.sw_version} for e in self.ecus.values()]
            result: dict[str, Any] = {"ecus": ecus}
            if self.ota is not None:
                # The full report goes over HTTPS, where the server records it.
                answer = self.ota.send_vci("remote_request")
                result = {"snapshot_id": answer["snapshot_id"], "ecu_count": len(ecus)}
            self._respond(command, "completed", result=result)
        elif name in ("start_download", "activate", "cancel") and self.ota is None:
            self._respond(
                command, "failed", detail="this vehicle has no HTTPS endpoint for updates"
            )
        elif name == "start_download":
            outcome = self.ota.run_update(reason="start_download command")  # type: ignore[union-attr]
            status = "failed" if outcome.result in ("failed", "rolled_back") else "completed"
            self._respond(
                command,
                status,
                detail=outcome.detail[:500],
                result={"update_id": outcome.update_id, "outcome": outcome.result},
            )
        elif name == "activate":
            activated = self.ota.activate()  # type: ignore[union-attr]
            if activated is None:
                self._respond(command, "failed", detail="no installed update is waiting for reboot")
            else:
                status = "completed" if activated.result == "succeeded" else "failed"
                self._respond(
                    command,
                    status,
                    detail=activated.detail[:500],
                    result={"update_id": activated.update_id, "outcome": activated.result},
                )
        elif name == "cancel":
            if self.ota.stop():  # type: ignore[union-attr]
                self._respond(command, "completed")
            else:
                self._respond(command, "failed", detail=f"nothing to cancel ({self.ota.phase})")  # type: ignore[union-attr]
        else:
            self._respond(command, "rejected", detail=f"cannot {name} with params {sorted(params)}")

    def _diagnostics(self, request: dict[str, Any]) -> None:
        results = diagnostic_results(request, self.ecu, self.config.answer_rule)
        if results:
            self.publish(
                "diagnostics/response",
                {"request_id": request["request_id"], "vin": self.config.vin, "results": results},
            )


READINESS = {
    "battery_percent": 80,
    "free_space_mb": 4096,
    "temperature_celsius": 30,
    "engine_off": True,
    "parking_brake": True,
    "network_stable": True,
    "ready_for_ota": True,
}


def telemetry_document(vin: str, seq: int, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """One telemetry message (docs/PROTOCOL.md, schema telemetry)."""
    return {
        "vin": vin,
        "seq": seq,
        "timestamp": int(time.time()),
        "vehicle_state": "PARKED_IGNITION_ON",
        "values": values
        or {
            "battery_percent": random.randint(55, 95),
            "speed_kph": 0.0,
            "coolant_temp_c": random.randint(20, 90),
            "odometer_km": 12_000 + seq,
        },
    }


def diagnostic_results(
    request: dict[str, Any], ecu: Callable[[str], SimulatedEcu], answer_rule: str
) -> list[dict[str, str]]:
    """The ECUs' answers to a diagnostics request; silent ECUs are left for the server to time out."""
    payload = bytes.fromhex(request["request_hex"])
    results = []
    for target in request["targets"]:
        ecu_id = target["ecu_id"]
        if not answers(ecu_id, answer_rule):
            continue
        response = ecu(ecu_id).handle(payload)
        if response is not None:
            results.append({"ecu_id": ecu_id, "response_hex": response.hex()})
    return results


# A broker answers CONNECT at once; amqtt, which speaks MQTT 3.1.1 only, holds an MQTT 5 CONNECT
# for about 10 s before it drops it, so the first attempt waits this long at most.
MQTT5_CONNACK_SECONDS = 5.0


def start_vehicle(
    config: VehicleConfig, *, connect_timeout: float = 15.0, where: str = "", **fields: Any
) -> SimulatedVehicle:
    """Start a vehicle and wait for its MQTT session.

    A broker that refuses MQTT 5 (a 3.1.1-only one such as the embedded broker) gets a second
    attempt in MQTT 3.1.1, as a real gateway would make. Raises ConnectionError in one line
    when there is no session either way.
    """
    vehicle = SimulatedVehicle(config, **fields).start()
    mqtt5 = config.protocol == mqtt.MQTTv5
    why = vehicle.wait_connected(
        min(connect_timeout, MQTT5_CONNACK_SECONDS) if mqtt5 else connect_timeout
    )
    if why and mqtt5:
        vehicle.stop(graceful=False)
        logger.warning("%s: MQTT 5 refused (%s); falling back to MQTT 3.1.1", config.vin, why)
        vehicle = SimulatedVehicle(replace(config, protocol=mqtt.MQTTv311), **fields).start()
        why = vehicle.wait_connected(connect_timeout)
    if why:
        vehicle.stop(graceful=False)
        where = where or f"at {config.host}:{config.port}"
        raise ConnectionError(f"no MQTT session {where}: {why}")
    return vehicle
