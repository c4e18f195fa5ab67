"""The product end to end: firmware upload to verified success, every connection over PQC-TLS.

The three listeners run in-process on ephemeral ports; the MQTT front forwards to the real
Mosquitto (MQTT_URL, default 127.0.0.1:1883) where the bridge also listens. An operator
uploads firmware and runs a campaign through the console API; two reference vehicles
register, report their configuration, hear of the offer on their retained desired state,
download their zone packages in resumable Range requests, verify both signatures and install.
One comes back on the new software; the other's new software does not boot and it rolls back.
"""

from __future__ import annotations

import io
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.conf import settings as django_settings

from core.mqtt.testing_broker import (
    TEST_BROKER_URL,
    reachable,
    real_publisher,
    sqlite_readers_do_not_lock,
    wait_for,
)
from simulator.ota import AgentOptions
from simulator.reference import ReferenceVehicle, ServerAddress
from simulator.tests.conftest import close_other_threads_connections
from telematics.testing import running_bridge

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Vehicle A: hybrid X25519MLKEM768 key exchange, ML-DSA-65 certificates on both sides.
HYBRID = 13
# Vehicle B: ML-KEM-768 key exchange, ECDSA-P256 certificates.
MLKEM_ECDSA = 1
ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"


def _vin() -> str:
    # The VIN is the MQTT client id and topic level on a shared broker: unique per run.
    return "TEST" + "".join(random.choice(ALPHABET) for _ in range(13))


@dataclass
class Server:
    ports: dict[str, int]
    pki: Any
    handshakes: list[dict[str, Any]]


@pytest.fixture
def broker(settings) -> str:
    if not reachable(TEST_BROKER_URL):
        pytest.fail(f"no MQTT broker at {TEST_BROKER_URL} (set MQTT_URL)")
    settings.MQTT_URL = TEST_BROKER_URL
    # The front only lets a vehicle use `vehicle/<its VIN>/`; unique VINs keep runs apart.
    settings.MQTT_TOPIC_ROOT = "vehicle"
    return TEST_BROKER_URL


@pytest.fixture
def server(broker, registry, settings, tmp_path) -> Iterator[Server]:
    from urllib.parse import urlsplit

    from otaproject.asgi import application
    from pqc.pki import FleetPki
    from pqc.server import (
        listeners_from_settings,
        recording_sessions,
        start_in_thread,
        stop_in_thread,
    )
    from vehicles.identity import certificate_speaks_for, record_tls_session_from_listener

    settings.SIGNING_KEY_DIR = tmp_path / "signing"
    settings.PACKAGE_DIR = tmp_path / "packages"
    pki = FleetPki(tmp_path / "pki")
    pki.init(hostnames=["localhost"])
    handshakes: list[dict[str, Any]] = []
    record_session = recording_sessions(record_tls_session_from_listener)

    def on_handshake(record: Any) -> None:
        handshakes.append(record.identity())
        record_session(record)  # what runota does: Vehicle.tls_* fields

    upstream = urlsplit(broker)
    listeners = listeners_from_settings(
        application=application,
        pki=pki,
        host="127.0.0.1",
        vehicle_port=0,
        console_port=0,
        mqtt_port=0,
        mqtt_upstream=(upstream.hostname, upstream.port or 1883),
        on_vehicle_handshake=on_handshake,
        mqtt_certificate_binding=certificate_speaks_for,
        allow_classical=False,
    )
    ports = start_in_thread(listeners)
    settings.OTA_PUBLIC_BASE_URL = f"https://localhost:{ports['vehicle']}"
    try:
        yield Server(ports=ports, pki=pki, handshakes=handshakes)
    finally:
        stop_in_thread(listeners)
        close_other_threads_connections()


@pytest.fixture
def operator_token(fleet_engineer) -> str:
    from django.contrib.auth.models import Group

    from core.roles import Role
    from core.tokens import create_token

    fleet_engineer.groups.add(Group.objects.get_or_create(name=Role.OPERATOR)[0])
    return create_token(fleet_engineer, actor=fleet_engineer, lifetime=None)[1]


class Console:
    """An operator's HTTPS client of the console listener (server certificate only)."""

    def __init__(self, server: Server, token: str) -> None:
        from pqc.catalogue import get_configuration
        from pqc.client import ClientCredentials

        self.port = server.ports["console"]
        self.connect = {
            "config": get_configuration(MLKEM_ECDSA),
            "credentials": ClientCredentials(ca=server.pki.ca_bundle_path),
            "server_hostname": "localhost",
        }
        self.token = token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        from pqc.client import https_request

        headers = {"Authorization": f"Token {self.token}", **kwargs.pop("headers", {})}
        return https_request(
            "127.0.0.1", self.port, method, path, headers=headers, **kwargs, **self.connect
        )

    def upload(self, ecu_type: str, version: str, image: bytes, hardware: str) -> dict:
        boundary = uuid.uuid4().hex
        body = io.BytesIO()
        for name, value in (
            ("ecu_type", ecu_type),
            ("version", version),
            ("hardware_versions", hardware),
        ):
            body.write(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n".encode()
            )
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{ecu_type}-{version}.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        body.write(image + f"\r\n--{boundary}--\r\n".encode())
        response = self.request(
            "POST",
            "/api/v1/firmware/upload",
            body=body.getvalue(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status == 201, response.body
        return response.json()


def _credentials(server: Server, vin: str, family: str, base: Path) -> Any:
    from pqc.client import ClientCredentials

    issued = server.pki.issue_vehicle(vin, family=family)
    server.pki.write_vehicle_bundle(issued, base / vin)
    return ClientCredentials.from_dir(base / vin)


def _vehicle(server: Server, vin: str, *, config_id: int, family: str, tmp_path: Path,
             options: AgentOptions) -> ReferenceVehicle:  # fmt: skip
    from firmware.services import generate_signing_key, trust_bundle_path
    from pqc.catalogue import get_configuration

    if not trust_bundle_path().exists():
        generate_signing_key()
    return ReferenceVehicle(
        vin=vin,
        server=ServerAddress(
            host="127.0.0.1",
            api_port=server.ports["vehicle"],
            mqtt_port=server.ports["mqtt"],
            server_name="localhost",
        ),
        config=get_configuration(config_id),
        credentials=_credentials(server, vin, family, tmp_path / "certs"),
        trust_file=trust_bundle_path(),
        build_sheet=Path(django_settings.ECU_REGISTRY_FILE),
        state_dir=tmp_path / "vehicles" / vin,
        options=options,
    )


def _clear_retained(vins: list[str]) -> None:
    """Leave no retained message of this run on the shared broker."""
    from urllib.parse import urlsplit

    parts = urlsplit(TEST_BROKER_URL)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cleanup-{uuid.uuid4().hex}")
    client.connect(parts.hostname, parts.port or 1883)
    client.loop_start()
    for vin in vins:
        for kind in ("desired-state", "status"):
            client.publish(f"vehicle/{vin}/{kind}", b"", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_upload_campaign_and_two_vehicles_over_pqc_tls_one_succeeds_one_rolls_back(
    server, operator_token, tmp_path
) -> None:
    from core.audit import verify_chain
    from core.models import AuditEvent
    from ecus.models import Ecu
    from ota.choices import CampaignStatus, UpdateState
    from ota.engine import run_tick
    from ota.models import Campaign, OtaUpdate, UpdateReport
    from vehicles.choices import VehicleStatus
    from vehicles.models import Vehicle

    sqlite_readers_do_not_lock()
    good_vin, bad_vin = _vin(), _vin()
    console = Console(server, operator_token)
    # Random bytes do not compress: the front zone package spans several 64 KiB ranges.
    ecm = console.upload("ECM", "2.0.0", random.randbytes(150_000), "2.0,2.1")
    bms = console.upload("BMS", "2.0.0", random.randbytes(40_000), "2.0,2.1")

    good = _vehicle(
        server, good_vin, config_id=HYBRID, family="ml-dsa-65", tmp_path=tmp_path,
        options=AgentOptions(cut_download_at=100_000),
    )  # fmt: skip
    bad = _vehicle(
        server, bad_vin, config_id=MLKEM_ECDSA, family="ecdsa-p256", tmp_path=tmp_path,
        options=AgentOptions(fail="boot", status_via="mqtt"),
    )  # fmt: skip
    try:
        with real_publisher(), running_bridge(shared=False):
            good.start()
            bad.start()
            created = console.request(
                "POST",
                "/api/v1/campaigns",
                json={
                    "name": "ECM and BMS 2.0",
                    "firmware_ids": [ecm["id"], bms["id"]],
                    "target_vins": [good_vin, bad_vin],
                    "wave_percentages": [100],
                    "failure_threshold": 0.5,
                    "success_threshold": 0.5,
                    "max_attempts": 1,
                },
            )
            assert created.status == 201, created.body
            campaign_id = created.json()["id"]
            started = console.request("POST", f"/api/v1/campaigns/{campaign_id}/start")
            assert started.status == 202, started.body

            run_tick()  # fan out and offer: the retained desired state reaches both vehicles

            def finished() -> bool:
                states = set(
                    OtaUpdate.objects.filter(campaign_id=campaign_id).values_list(
                        "state", flat=True
                    )
                )
                return states <= {UpdateState.SUCCEEDED, UpdateState.ROLLED_BACK} and bool(states)

            wait_for(finished, timeout=90)
            run_tick()  # the wave is judged: one success, one final rollback -> completed
            # The outcome clears each vehicle's retained desired state.
            wait_for(
                lambda: good.mqtt.desired_state and not good.mqtt.desired_state["pending_update"]
            )  # noqa: E501
            wait_for(
                lambda: bad.mqtt.desired_state and not bad.mqtt.desired_state["pending_update"]
            )  # noqa: E501
            wait_for(lambda: not good.agent.busy and not bad.agent.busy)
    finally:
        good.stop()
        bad.stop()
        _clear_retained([good_vin, bad_vin])

    # The campaign, seen through the console API.
    detail = console.request("GET", f"/api/v1/campaigns/{campaign_id}").json()
    assert detail["status"] == CampaignStatus.COMPLETED
    assert detail["counts"]["succeeded"] == 1
    assert detail["counts"]["rolled_back"] == 1
    assert Campaign.objects.get(pk=campaign_id).status == CampaignStatus.COMPLETED

    good_update = OtaUpdate.objects.get(campaign_id=campaign_id, vehicle__vin=good_vin)
    bad_update = OtaUpdate.objects.get(campaign_id=campaign_id, vehicle__vin=bad_vin)
    assert good_update.state == UpdateState.SUCCEEDED
    assert bad_update.state == UpdateState.ROLLED_BACK
    # The good vehicle walked the states, each from its own report over HTTPS.
    walked = list(
        UpdateReport.objects.filter(update=good_update, outcome="applied")
        .order_by("sequence")
        .values_list("state_after", flat=True)
    )
    assert [s for i, s in enumerate(walked) if i == 0 or walked[i - 1] != s] == [
        "downloading",
        "downloaded",
        "verifying",
        "installing",
        "awaiting_reboot",
        "succeeded",
    ]
    assert set(
        UpdateReport.objects.filter(update=good_update).values_list("source", flat=True)
    ) == {"http"}  # noqa: E501
    assert set(UpdateReport.objects.filter(update=bad_update).values_list("source", flat=True)) == {
        "mqtt"
    }  # noqa: E501

    # ECU registry: the new versions run on the good vehicle, the old ones on the other.
    planned = {"ECU_001", "ECU_009", "ECU_017", "ECU_025", "ECU_033"}
    assert {i["ecu_id"] for i in good_update.plan["items"]} == planned
    versions = dict(
        Ecu.objects.filter(vehicle__vin=good_vin, ecu_id__in=planned).values_list(
            "ecu_id", "sw_version"
        )
    )
    assert versions == dict.fromkeys(planned, "2.0.0")
    assert {
        e.ecu_id: e.sw_version for e in good.agent.ecus.values() if e.ecu_id in planned
    } == versions
    kept = dict(
        Ecu.objects.filter(vehicle__vin=bad_vin, ecu_id__in=planned).values_list(
            "ecu_id", "sw_version"
        )
    )
    assert kept == bad_update.source_versions()
    assert "2.0.0" not in kept.values()

    # The good vehicle resumed its cut download and verified two zone packages.
    assert good.https.stats.resumes >= 1
    assert good.https.stats.requests >= 4
    assert [o.result for o in good.agent.outcomes if o.update_id] == ["succeeded"]
    assert [o.result for o in bad.agent.outcomes if o.update_id] == ["rolled_back"]
    assert len(good_update.plan["packages"]) == 2

    # Audit trail: operator actions, both outcomes with their versions, the chain intact.
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {
        "firmware.uploaded",
        "campaign.created",
        "campaign.started",
        "campaign.fanned_out",
        "campaign.completed",
        "vehicle.registered",
        "ota.update.succeeded",
        "ota.update.rolled_back",
    } <= actions, actions
    success = AuditEvent.objects.get(action="ota.update.succeeded")
    assert success.vehicle_vin == good_vin
    assert success.after == dict.fromkeys(planned, "2.0.0")
    assert AuditEvent.objects.get(action="ota.update.rolled_back").vehicle_vin == bad_vin
    assert verify_chain() is None

    # Both vehicles are back in service, and the server recorded what their handshakes used.
    good_row, bad_row = Vehicle.objects.get(vin=good_vin), Vehicle.objects.get(vin=bad_vin)
    assert (good_row.status, bad_row.status) == (VehicleStatus.ACTIVE, VehicleStatus.ACTIVE)
    assert good_row.tls_group == "X25519MLKEM768"
    assert good_row.tls_signature_algorithm == "mldsa65"
    assert bad_row.tls_group == "MLKEM768"
    assert bad_row.tls_signature_algorithm == "ecdsa_secp256r1_sha256"

    # Every connection each vehicle opened (HTTPS and MQTT) used its one configuration.
    assert {(s.group, s.peer_key_type, s.own_key_type) for s in good.sessions()} == {
        ("X25519MLKEM768", "ml-dsa-65", "ml-dsa-65")
    }
    assert {(s.group, s.peer_key_type, s.own_key_type) for s in bad.sessions()} == {
        ("MLKEM768", "ecdsa-p256", "ecdsa-p256")
    }
    assert good.tunnel.sessions and good.https.sessions and bad.tunnel.sessions
    assert {h["group"] for h in server.handshakes if h["vin"] == good_vin} == {"X25519MLKEM768"}
    json.dumps(good.describe_sessions())  # what the CLI prints is plain JSON
