"""The TLS posture each vehicle handshake leaves on the vehicle record."""

from __future__ import annotations

import datetime

import pytest

from vehicles import identity
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


EXPIRY = datetime.datetime(2027, 3, 1, 12, 0, tzinfo=datetime.UTC)


def test_a_handshake_with_the_bound_certificate_records_its_expiry() -> None:
    """The fleet's certificate-expiry filter reads what the vehicles' handshakes carried."""
    Vehicle.objects.create(
        vin=VIN, model_name="Aurora", model_year=2026, certificate_fingerprint="ab" * 32
    )
    record_tls_session(
        vin=VIN,
        group="X25519MLKEM768",
        signature_algorithm="mldsa65",
        version="TLSv1.3",
        cert_fingerprint="ab" * 32,
        cert_not_after=EXPIRY,
    )
    assert Vehicle.objects.get(vin=VIN).certificate_not_after == EXPIRY


def test_a_handshake_with_another_certificate_leaves_the_expiry_alone() -> None:
    Vehicle.objects.create(
        vin=VIN, model_name="Aurora", model_year=2026, certificate_fingerprint="ab" * 32
    )
    assert record_tls_session(
        vin=VIN,
        group="X25519MLKEM768",
        signature_algorithm="mldsa65",
        version="TLSv1.3",
        cert_fingerprint="cd" * 32,
        cert_not_after=EXPIRY,
    )
    vehicle = Vehicle.objects.get(vin=VIN)
    assert vehicle.certificate_not_after is None
    assert vehicle.tls_group == "X25519MLKEM768"


def test_the_listener_passes_the_certificate_and_its_expiry_on(monkeypatch) -> None:
    seen: dict = {}
    monkeypatch.setattr(identity, "record_tls_session", lambda **kwargs: seen.update(kwargs))
    monkeypatch.setattr(identity, "close_old_connections", lambda: None)
    record_tls_session_from_listener(
        {"vin": VIN, "cert_fingerprint": "ab" * 32, "cert_not_after": EXPIRY.isoformat()}
    )
    assert (seen["cert_fingerprint"], seen["cert_not_after"]) == ("ab" * 32, EXPIRY)
