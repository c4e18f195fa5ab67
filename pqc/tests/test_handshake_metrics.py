"""Handshake counters of /metrics, from real PQC-TLS handshakes on the listeners."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from pqc.catalogue import load_catalogue
from pqc.client import ClientCredentials, TlsRefused, https_request, open_connection
from pqc.tests.conftest import VIN_A, FleetMaterial, RunningListeners

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CONFIG = next(c for c in load_catalogue() if not c.classical and c.signature == "ml-dsa-65")


def handshakes(listener: str, group: str) -> float:
    total = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if (
                sample.name == "ota_tls_handshakes_total"
                and sample.labels["listener"] == listener
                and sample.labels["group"] == group
            ):
                total += sample.value
    return total


def failures(listener: str) -> float:
    value = REGISTRY.get_sample_value("ota_tls_handshake_failures_total", {"listener": listener})
    return value or 0.0


def eventually(check, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_finished_and_failed_handshakes_are_counted_per_listener(
    running: RunningListeners, fleet: FleetMaterial
) -> None:
    credentials = fleet.credentials[(VIN_A, CONFIG.signature)]
    before = handshakes("vehicle", CONFIG.group), handshakes("mqtt", CONFIG.group)
    for listener in ("vehicle", "mqtt"):
        with open_connection(running.host, running.ports[listener], config=CONFIG,
                             credentials=credentials, server_hostname="localhost"):  # fmt: skip
            pass
    assert eventually(lambda: handshakes("vehicle", CONFIG.group) == before[0] + 1)
    assert eventually(lambda: handshakes("mqtt", CONFIG.group) == before[1] + 1)

    failed_before = failures("vehicle")
    with pytest.raises(TlsRefused):  # no client certificate: the vehicle listener refuses
        https_request(running.host, running.ports["vehicle"], "GET", "/api/v1/tls/whoami/",
                      config=CONFIG, credentials=ClientCredentials(ca=credentials.ca),
                      server_hostname="localhost")  # fmt: skip
    assert eventually(lambda: failures("vehicle") == failed_before + 1)
    assert handshakes("vehicle", CONFIG.group) == before[0] + 1
