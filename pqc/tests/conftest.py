from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pqc.client import ClientCredentials
from pqc.pki import FAMILIES, FleetPki, utcnow

VIN_A = "WVWZZZ1JZXW000001"
VIN_B = "WVWZZZ1JZXW000002"


@dataclass
class FleetMaterial:
    """A PKI with vehicle credentials for the handshake and identity tests."""

    pki: FleetPki
    base: Path
    # credentials[(vin, family)]
    credentials: dict[tuple[str, str], ClientCredentials] = field(default_factory=dict)

    def issue(self, vin: str, family: str = "ecdsa-p256", *, name: str | None = None,
              pki: FleetPki | None = None, **validity: Any) -> ClientCredentials:  # fmt: skip
        issuer = pki or self.pki
        issued = issuer.issue_vehicle(vin, family=family, **validity)
        out = self.base / (name or f"{vin}-{family}")
        issuer.write_vehicle_bundle(issued, out)
        # Trust is always the fleet's own bundle: only the presented chain differs.
        return ClientCredentials(ca=self.pki.ca_bundle_path, cert=out / "vehicle.crt",
                                 key=out / "vehicle.key")  # fmt: skip

    def serial_of(self, credentials: ClientCredentials) -> int:
        from cryptography import x509

        assert credentials.cert is not None
        return x509.load_pem_x509_certificate(credentials.cert.read_bytes()).serial_number


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> FleetMaterial:
    base = tmp_path_factory.mktemp("fleet")
    pki = FleetPki(base / "pki")
    pki.init(hostnames=["localhost"])
    material = FleetMaterial(pki=pki, base=base)
    for family in FAMILIES:
        material.credentials[(VIN_A, family)] = material.issue(VIN_A, family)
    material.credentials[(VIN_B, "ecdsa-p256")] = material.issue(VIN_B, "ecdsa-p256")
    return material


def expired_validity() -> dict[str, datetime.datetime]:
    now = utcnow()
    return {
        "not_before": now - datetime.timedelta(days=10),
        "not_after": now - datetime.timedelta(days=1),
    }


@dataclass
class RunningListeners:
    ports: dict[str, int]
    handshakes: list[dict[str, Any]]
    listeners: Any
    host: str = "127.0.0.1"


def _certificate_binding(vin: str, cert_fingerprint: str) -> bool:
    """What runota gives the MQTT front, looked up at each call so that a test may patch it."""
    from vehicles import identity

    return identity.certificate_speaks_for(vin, cert_fingerprint)


def start_listeners(fleet: FleetMaterial, *, hook: Any, mqtt_upstream: tuple[str, int],
                    **overrides: Any) -> RunningListeners:  # fmt: skip
    from otaproject.asgi import application
    from pqc.server import listeners_from_settings, start_in_thread

    handshakes: list[dict[str, Any]] = []

    def record(handshake: Any) -> None:
        handshakes.append(handshake.identity())
        if hook is not None:
            hook(handshake)

    listeners = listeners_from_settings(
        application=application,
        pki=fleet.pki,
        host="127.0.0.1",
        vehicle_port=0,
        console_port=0,
        mqtt_port=0,
        mqtt_upstream=mqtt_upstream,
        on_vehicle_handshake=record,
        **{"mqtt_certificate_binding": _certificate_binding, **overrides},
    )
    ports = start_in_thread(listeners)
    return RunningListeners(ports=ports, handshakes=handshakes, listeners=listeners)


def _broker_address() -> tuple[str, int]:
    from urllib.parse import urlsplit

    from core.mqtt.testing_broker import TEST_BROKER_URL

    parts = urlsplit(TEST_BROKER_URL)
    return (parts.hostname or "127.0.0.1", parts.port or 1883)


# The real broker behind the MQTT front in these tests: MQTT_URL, else the local Mosquitto.
MOSQUITTO = _broker_address()


@pytest.fixture(scope="session")
def running(fleet: FleetMaterial) -> Iterator[RunningListeners]:
    """All three listeners on ephemeral ports, on a reactor thread, for the whole session."""
    from pqc.server import stop_in_thread

    server = start_listeners(fleet, hook=None, mqtt_upstream=MOSQUITTO, allow_classical=False)
    yield server
    stop_in_thread(server.listeners)
