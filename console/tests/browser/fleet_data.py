"""A small fleet with some history, so every page has something to show."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth.models import Group, User
from django.utils import timezone

VINS = ["WVWZZZ1JZ3W386752", "1HGCM82633A004352", "JH4KA8260MC000123", "5YJ3E1EA7KF317000"]
PASSWORD = "console-pw-1"


def make_user(username: str, *roles: str, superuser: bool = False) -> User:
    user = User.objects.create_user(
        username=username, password=PASSWORD, is_staff=superuser, is_superuser=superuser
    )
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def build_fleet() -> list[Any]:
    """Register vehicles with the registry's ECUs and give them a connection history."""
    from django.conf import settings

    from ecus.registry import load_registry_file
    from ecus.services import import_registry
    from vehicles.models import Vehicle
    from vehicles.services import register_vehicle

    import_registry(load_registry_file(settings.ECU_REGISTRY_FILE))
    now = timezone.now()
    postures = [
        ("MLKEM768", "ecdsa_secp256r1_sha256"),
        ("MLKEM768", "mldsa65"),
        ("X25519MLKEM768", "mldsa65"),
        ("", ""),
    ]
    vehicles = []
    for index, vin in enumerate(VINS):
        vehicle = register_vehicle(vin=vin, model_name="Aurora", model_year=2024 + index % 3)
        group, sig = postures[index]
        Vehicle.objects.filter(pk=vehicle.pk).update(
            status="active" if group else "registered",
            is_online=index < 2,
            last_seen_at=now - datetime.timedelta(minutes=3 * index + 1) if group else None,
            tls_group=group,
            tls_signature_algorithm=sig,
            tls_version="TLSv1.3" if group else "",
            tls_seen_at=now if group else None,
        )
        vehicle.refresh_from_db()
        vehicles.append(vehicle)
    return vehicles


def give_telemetry(vehicle: Any) -> None:
    from diagnostics.models import TelemetryLatest

    now = timezone.now()
    TelemetryLatest.objects.create(
        vehicle=vehicle,
        values={
            "battery_percent": 78,
            "free_space_mb": 5120,
            "temperature_celsius": 31.5,
            "engine_off": True,
            "parking_brake": True,
            "vehicle_state": "PARKED_IGNITION_OFF",
        },
        seq=42,
        reported_at=now - datetime.timedelta(seconds=40),
        received_at=now - datetime.timedelta(seconds=39),
    )
