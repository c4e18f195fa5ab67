"""The production path: a vehicle on PQC-TLS through the MQTT front, the broker, the bridge."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.mqtt.testing_broker import (
    PrivateMosquitto,
    real_publisher,
    sqlite_readers_do_not_lock,
    wait_for,
)
from diagnostics.models import ControlCommand, DiagnosticRequest, TelemetrySample
from diagnostics.services import send_control_command, send_diagnostic_request
from simulator.vehicle import SimulatedVehicle, VehicleConfig
from telematics.testing import running_bridge

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# X25519MLKEM768 key exchange with an ML-DSA-65 vehicle certificate.
HYBRID_CONFIG = 13


@pytest.fixture
def broker(settings) -> Iterator[PrivateMosquitto]:
    # A private broker: the front only allows the fixed `vehicle/` root, which a shared broker
    # would mix with other runs.
    mosquitto = PrivateMosquitto()
    mosquitto.start()
    settings.MQTT_URL = mosquitto.url
    settings.MQTT_TOPIC_ROOT = "vehicle"
    yield mosquitto
    mosquitto.cleanup()


@pytest.fixture
def front(broker, tmp_path):
    from otaproject.asgi import application
    from pqc.pki import FleetPki
    from pqc.server import listeners_from_settings, start_in_thread, stop_in_thread
    from vehicles.identity import certificate_speaks_for

    pki = FleetPki(tmp_path / "pki")
    pki.init(hostnames=["localhost"])
    listeners = listeners_from_settings(
        application=application,
        pki=pki,
        host="127.0.0.1",
        vehicle_port=0,
        console_port=0,
        mqtt_port=0,
        mqtt_upstream=("127.0.0.1", broker.port),
        on_vehicle_handshake=None,
        mqtt_certificate_binding=certificate_speaks_for,
        allow_classical=False,
    )
    ports = start_in_thread(listeners)
    yield pki, ports["mqtt"]
    stop_in_thread(listeners)


@pytest.fixture
def pqc_vehicle(vehicle, front, tmp_path) -> Iterator[SimulatedVehicle]:
    from pqc.catalogue import get_configuration, load_catalogue
    from pqc.client import ClientCredentials, MqttTlsTunnel

    pki, mqtt_port = front
    issued = pki.issue_vehicle(vehicle.vin, family="ml-dsa-65")
    pki.write_vehicle_bundle(issued, tmp_path / "vehicle")
    credentials = ClientCredentials(
        ca=pki.ca_bundle_path,
        cert=tmp_path / "vehicle" / "vehicle.crt",
        key=tmp_path / "vehicle" / "vehicle.key",
    )
    tunnel = MqttTlsTunnel(
        host="127.0.0.1",
        port_remote=mqtt_port,
        connect={
            "config": get_configuration(HYBRID_CONFIG, load_catalogue()),
            "credentials": credentials,
            "server_hostname": "localhost",
        },
    ).start()
    sim = SimulatedVehicle(
        VehicleConfig(vin=vehicle.vin, port=tunnel.port, answer_rule="odd")
    ).start()
    try:
        assert sim.connected.wait(15), f"no MQTT session through the front: {tunnel.errors}"
        yield sim
    finally:
        sim.stop(graceful=False)
        tunnel.stop()


def test_telemetry_ota_status_control_and_diagnostics_flow_through_the_pqc_front(
    vehicle, broker, pqc_vehicle, fleet_operator
):
    from ota.models import OtaUpdate

    sqlite_readers_do_not_lock()
    with real_publisher(), running_bridge(shared=False):
        wait_for(lambda: _refreshed(vehicle).is_online)
        update = OtaUpdate.objects.create(vehicle=vehicle)
        pqc_vehicle.send_telemetry(battery_percent=64)
        pqc_vehicle.send_ota_status(update_id=update.pk, vmg_state=1, percentage=5)
        wait_for(lambda: TelemetrySample.objects.filter(vehicle=vehicle).exists())
        wait_for(lambda: OtaUpdate.objects.get(pk=update.pk).state == "downloading")

        (command,) = send_control_command(
            vehicles=[vehicle], command="collect_readiness", issued_by=fleet_operator
        )
        wait_for(lambda: ControlCommand.objects.filter(pk=command.pk, status="completed").exists())

        request = send_diagnostic_request(
            vehicle=vehicle,
            service=0x22,
            params={"dids": [0xF190]},
            ecu_id="ECU_001",
            requested_by=fleet_operator,
        )
        done = wait_for(
            lambda: DiagnosticRequest.objects.filter(pk=request.pk, status="completed").first()
        )
        assert done.results.get().decoded["text"] == vehicle.vin


def _refreshed(obj):
    obj.refresh_from_db()
    return obj
