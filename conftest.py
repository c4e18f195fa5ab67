"""Personas and shared fixtures: operators with each role, and vehicles on mutual TLS."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from core.auth import TLS_META_KEY
from core.roles import Role


def _user(username: str, *roles: str, **extra: Any) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username, **extra)
    for role in roles:
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
    return user


@pytest.fixture
def fleet_engineer(db) -> User:
    return _user("erin", Role.FLEET_ENGINEER)


@pytest.fixture
def fleet_operator(db) -> User:
    return _user("olga", Role.OPERATOR)


@pytest.fixture
def other_operator(db) -> User:
    return _user("oscar", Role.OPERATOR)


@pytest.fixture
def viewer(db) -> User:
    return _user("victor", Role.VIEWER)


@pytest.fixture
def admin_user(db) -> User:
    return _user("ada", is_staff=True, is_superuser=True)


def tls_identity(vin: str, **overrides: str) -> dict[str, str]:
    """What the TLS layer hands Django for a vehicle on the default configuration."""
    return {
        "vin": vin,
        "group": "MLKEM768",
        "signature_algorithm": "ecdsa_secp256r1_sha256",
        "version": "TLSv1.3",
        "cipher": "TLS_AES_256_GCM_SHA384",
        "cert_fingerprint": "",
        "cert_serial": "",
        **overrides,
    }


def api_client_for(user: User | None = None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user=user)
    return client


def vehicle_api_client(vin: str, **tls: str) -> APIClient:
    """An API client whose requests carry the mutual-TLS identity of `vin`."""
    client = APIClient()
    client.defaults[TLS_META_KEY] = tls_identity(vin, **tls)
    return client


@pytest.fixture
def registry(db):
    """The fleet's ECU registry as shipped in config/ecu_registry.yaml."""
    from ecus.registry import load_registry_file
    from ecus.services import import_registry

    return import_registry(load_registry_file(settings.ECU_REGISTRY_FILE))


@pytest.fixture
def vehicle(registry):
    from vehicles.services import register_vehicle

    return register_vehicle(vin="WVWZZZ1JZ3W386752", model_name="Aurora", model_year=2026)


@pytest.fixture
def other_vehicle(registry):
    from vehicles.services import register_vehicle

    return register_vehicle(vin="1HGCM82633A004352", model_name="Aurora", model_year=2025)


@pytest.fixture
def vehicle_client(vehicle) -> APIClient:
    return vehicle_api_client(vehicle.vin)


@pytest.fixture
def operator_client(fleet_operator) -> APIClient:
    return api_client_for(fleet_operator)


@pytest.fixture
def engineer_client(fleet_engineer) -> APIClient:
    return api_client_for(fleet_engineer)


@pytest.fixture
def viewer_client(viewer) -> APIClient:
    return api_client_for(viewer)
