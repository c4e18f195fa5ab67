"""A complete reference vehicle over PQC-TLS: HTTPS to the vehicle API, MQTT through the front.

Both paths use one configuration of the PQC catalogue and the vehicle's certificate. What each
handshake negotiated is kept (`https.sessions`, `tunnel.sessions`) so it can be shown or
checked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from firmware.signing import load_trust_set
from pqc.catalogue import PqcConfiguration
from pqc.client import (
    ClientCredentials,
    MqttTlsTunnel,
)
from pqc.tls import TlsSessionInfo
from simulator.ecus import load_build_sheet
from simulator.https import VehicleHttps
from simulator.ota import AgentOptions, OtaAgent
from simulator.uptane import primary_verifier
from simulator.vehicle import SimulatedVehicle, VehicleConfig, start_vehicle

logger = logging.getLogger("simulator")


@dataclass
@dataclass
class ServerAddress:
    host: str = "127.0.0.1"
    api_port: int = 8443
    mqtt_port: int = 8883
    # The name the server certificate must carry (and the Host header).
    server_name: str = "localhost"


@dataclass
class ReferenceVehicle:
    vin: str
    server: ServerAddress
    config: PqcConfiguration
    credentials: ClientCredentials
    trust_file: Path
    build_sheet: Path
    state_dir: Path
    options: AgentOptions = field(default_factory=AgentOptions)
    model_name: str = "Aurora"
    model_year: int = 2026
    vmg_id: str = ""
    mqtt_protocol: int = mqtt.MQTTv5
    answer_rule: str = "all"
    telemetry_interval: float = 10.0
    # The server's MQTT_TOPIC_ROOT: the front admits only topics under it.
    topic_root: str = "vehicle"
    # Provisioned Uptane roots (image-root.json, director-root.json): verify before installing.
    uptane_roots: Path | None = None

    def __post_init__(self) -> None:
        self.https = VehicleHttps(
            host=self.server.host,
            port=self.server.api_port,
            config=self.config,
            credentials=self.credentials,
            server_hostname=self.server.server_name,
        )
        self.agent = OtaAgent(
            vin=self.vin,
            api=self.https,
            trust=load_trust_set(self.trust_file),
            ecus=load_build_sheet(self.build_sheet, self.vin),
            state_dir=self.state_dir,
            options=self.options,
            model_name=self.model_name,
            model_year=self.model_year,
            vmg_id=self.vmg_id or f"VMG-{self.vin[-6:]}",
        )
        if self.uptane_roots is not None:
            self.agent.uptane = primary_verifier(
                self.https,
                state_dir=self.state_dir / "uptane",
                ecus=self.agent.ecus,
                roots_dir=self.uptane_roots,
            )
        self.tunnel = MqttTlsTunnel(
            host=self.server.host,
            port_remote=self.server.mqtt_port,
            connect={
                "config": self.config,
                "credentials": self.credentials,
                "server_hostname": self.server.server_name,
            },
        )
        self.mqtt: SimulatedVehicle | None = None

    def start(self, *, register: bool = True, connect_timeout: float = 15.0) -> ReferenceVehicle:
        """Register and report the VCI over HTTPS, then join MQTT (where offers arrive)."""
        if register:
            self.agent.register()
            self.agent.send_vci("power_on")
        self.tunnel.start()
        config = VehicleConfig(
            vin=self.vin,
            port=self.tunnel.port,
            protocol=self.mqtt_protocol,
            topic_root=self.topic_root,
            telemetry_interval=self.telemetry_interval,
            answer_rule=self.answer_rule,
        )
        try:
            self.mqtt = start_vehicle(
                config,
                connect_timeout=connect_timeout,
                where=f"through the front at {self.server.host}:{self.server.mqtt_port}",
                ecus=self.agent.ecus,
                ota=self.agent,
            )
        except ConnectionError as exc:
            self.stop()
            # The tunnel's last TLS error says more than the MQTT client can see.
            tls = f" (TLS: {self.tunnel.errors[-1]})" if self.tunnel.errors else ""
            raise ConnectionError(f"{exc}{tls}") from None
        self.mqtt_protocol = self.mqtt.config.protocol
        self.agent.mqtt_status = self.mqtt.send_ota_status
        return self

    def stop(self) -> None:
        if self.mqtt is not None:
            self.mqtt.stop()
        self.tunnel.stop()
        self.https.close()

    def sessions(self) -> list[TlsSessionInfo]:
        """Every PQC-TLS connection this vehicle opened, HTTPS and MQTT."""
        return [*self.https.sessions, *self.tunnel.sessions]

    def describe_sessions(self) -> list[dict[str, Any]]:
        return [
            {
                "group": s.group,
                "server_key": s.peer_key_type,
                "client_key": s.own_key_type,
                "version": s.version,
            }
            for s in self.sessions()
        ]
