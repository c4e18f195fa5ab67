"""The TLS posture each vehicle handshake leaves on the vehicle record."""

from __future__ import annotations

import pytest

from vehicles.identity import record_tls_session, record_tls_session_from_listener
from vehicles.models import Vehicle

pytestmark = pytest.mark.django_db

VIN = "WVWZZZ1JZXW000001"


def test_record_tls_session_stores_the_negotiated_configuration() -> None:
    Vehicle.objects.create(vin=VIN, model_name="Aurora", model_year=2026)

    assert record_tls_session(
        vin=VIN, group="X25519MLKEM768", signature_algorithm="mldsa65", version="TLSv1.3"
    )

    vehicle = Vehicle.objects.get(vin=VIN)
    assert (vehicle.tls_group, vehicle.tls_signature_algorithm, vehicle.tls_version) == (
        "X25519MLKEM768",
        "mldsa65",
        "TLSv1.3",
    )
    assert vehicle.tls_seen_at is not None


def test_record_tls_session_ignores_an_unregistered_vin() -> None:
    assert not record_tls_session(
        vin=VIN, group="MLKEM768", signature_algorithm="mldsa65", version="TLSv1.3"
    )


def test_the_listener_entry_point_never_raises(caplog) -> None:
    record_tls_session_from_listener({"group": "MLKEM768"})  # no VIN at all
    assert "could not record the TLS session" in caplog.text
