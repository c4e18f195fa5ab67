"""The MQTT front checks each VIN's certificate binding with the rule the process gives it."""

from __future__ import annotations

import pytest

from pqc.server import listeners_from_settings
from pqc.tests.conftest import FleetMaterial


def _listeners(fleet: FleetMaterial, **overrides):
    from otaproject.asgi import application

    return listeners_from_settings(
        application=application,
        pki=fleet.pki,
        host="127.0.0.1",
        vehicle_port=0,
        console_port=0,
        mqtt_port=0,
        mqtt_upstream=("127.0.0.1", 1),
        **overrides,
    )


def test_the_front_does_not_start_without_a_binding_check(fleet: FleetMaterial) -> None:
    listeners = _listeners(fleet)
    with pytest.raises(ValueError, match="mqtt_certificate_binding"):
        listeners.listen()
    assert listeners.ports == {}
