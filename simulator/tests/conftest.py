"""Fixtures of the simulator tests: signing keys, and a vehicle that gets an ECM update offer."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.services import generate_signing_key, trust_bundle_path
from ota.models import OtaUpdate
from ota.tests.conftest import launch_campaign, make_release
from simulator.ota import OtaAgent
from simulator.tests.in_process import VIN


@pytest.fixture
def keys(settings, tmp_path) -> Path:
    settings.SIGNING_KEY_DIR = tmp_path / "signing"
    settings.PACKAGE_DIR = tmp_path / "packages"
    generate_signing_key()
    return trust_bundle_path()


@pytest.fixture
def offered(registry, keys, fleet_operator):
    """Register and report over the API, then a campaign offers ECM 2.0.0."""

    def offer(agent: OtaAgent) -> OtaUpdate:
        assert agent.register()["vin"] == VIN
        agent.send_vci("power_on")
        release = make_release("ECM", "2.0.0", hardware=("2.0", "2.1"))
        launch_campaign(fleet_operator, [release])
        return OtaUpdate.objects.get(vehicle__vin=VIN)

    return offer


def close_other_threads_connections() -> None:
    """Close the database sessions the server's worker threads keep open.

    Those threads outlive the test, and on PostgreSQL an open session keeps the test database
    from being dropped. Django refuses to close another thread's connection, so the raw
    connection is closed and forgotten (the thread reconnects if it serves again).
    """
    import contextlib
    import gc

    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper

    ours = {id(connections[alias]) for alias in connections}
    for wrapper in gc.get_objects():
        # type(), not isinstance(): isinstance() touches lazy objects (a request's CSP nonce
        # raises once its response is sent) and dead weak proxies among the gc objects.
        if not issubclass(type(wrapper), BaseDatabaseWrapper) or id(wrapper) in ours:
            continue
        if wrapper.vendor == "postgresql" and wrapper.connection is not None:
            with contextlib.suppress(Exception):
                wrapper.connection.close()
            wrapper.connection = None
