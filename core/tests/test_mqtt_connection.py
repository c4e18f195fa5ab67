"""Broker logins per role and bridge client ids that two processes never share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from core.mqtt.connection import ClientIdInUse, broker_address, claim_bridge_client_id

CLAIM_IN_CHILD = (
    "import django; django.setup(); "
    "from core.mqtt.connection import claim_bridge_client_id; "
    "print(claim_bridge_client_id().value)"
)


def _child_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQTT_")}
    env.update(
        DJANGO_SETTINGS_MODULE="otaproject.settings",
        OTA_VAR_DIR=str(var_dir),
        MQTT_BRIDGE_LOCK_DIR=str(var_dir / "locks"),
        **extra,
    )
    return env


def test_external_broker_logins_come_from_the_url_or_each_roles_settings(settings):
    settings.MQTT_URL = "mqtt://ota%2Dbridge:s%40cret@broker.internal:1884"
    settings.MQTT_BRIDGE_USERNAME, settings.MQTT_BRIDGE_PASSWORD = "ignored", "ignored"
    settings.MQTT_FRONT_USERNAME, settings.MQTT_FRONT_PASSWORD = "front", "front-secret"
    bridge, front = broker_address("bridge"), broker_address("front")
    assert (bridge.host, bridge.port) == ("broker.internal", 1884)
    assert (bridge.username, bridge.password) == ("ota-bridge", "s@cret")
    assert (front.username, front.password) == ("front", "front-secret")

    settings.MQTT_URL = "mqtt://broker.internal:1883"
    settings.MQTT_BRIDGE_USERNAME, settings.MQTT_BRIDGE_PASSWORD = "bridge", "bridge-secret"
    assert (broker_address("bridge").username, broker_address("bridge").password) == (
        "bridge",
        "bridge-secret",
    )


def test_an_unknown_role_is_an_error():
    with pytest.raises(ValueError, match="vehicle"):
        broker_address("vehicle")


def test_broker_passwords_can_come_from_mounted_secret_files(tmp_path):
    (tmp_path / "front-password").write_text("from-a-file\n")
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.MQTT_FRONT_USERNAME, settings.MQTT_FRONT_PASSWORD)"
    )
    env = _child_env(
        tmp_path,
        MQTT_FRONT_USERNAME="front",
        MQTT_FRONT_PASSWORD_FILE=str(tmp_path / "front-password"),
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["front", "from-a-file"], result.stderr


def test_bridge_client_ids_are_stable_per_instance_and_never_shared(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.MQTT_BRIDGE_LOCK_DIR = tmp_path / "locks"
    settings.MQTT_BRIDGE_CLIENT_ID = ""
    first = claim_bridge_client_id()
    try:
        # Another process on the same host gets the next free id, not ours.
        result = subprocess.run(
            [sys.executable, "-c", CLAIM_IN_CHILD],
            env=_child_env(tmp_path),
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
        )
        other = result.stdout.strip()
        assert other.startswith("ota-bridge-") and other != first.value, result.stderr
        # So does a second bridge in this process.
        second = claim_bridge_client_id()
        assert second.value != first.value
        second.release()
    finally:
        first.release()
    # Restarted, the instance takes its old id back, and with it its broker session.
    again = claim_bridge_client_id()
    assert again.value == first.value
    again.release()


def test_an_explicit_client_id_held_by_another_bridge_is_refused(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.MQTT_BRIDGE_LOCK_DIR = tmp_path / "locks"
    held = claim_bridge_client_id("ota-bridge-eu-1")
    try:
        with pytest.raises(ClientIdInUse, match="ota-bridge-eu-1"):
            claim_bridge_client_id("ota-bridge-eu-1")
    finally:
        held.release()
    claim_bridge_client_id("ota-bridge-eu-1").release()


def test_servers_with_different_var_directories_still_claim_different_ids(settings, tmp_path):
    """Two servers on one host, each with its own VAR_DIR, on one broker."""
    settings.MQTT_BRIDGE_LOCK_DIR = tmp_path / "locks"
    settings.MQTT_BRIDGE_CLIENT_ID = ""
    settings.VAR_DIR = tmp_path / "first"
    first = claim_bridge_client_id()
    try:
        result = subprocess.run(
            [sys.executable, "-c", CLAIM_IN_CHILD],
            env=_child_env(tmp_path / "second") | {"MQTT_BRIDGE_LOCK_DIR": str(tmp_path / "locks")},
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.stdout.strip().startswith("ota-bridge-"), result.stderr
        assert result.stdout.strip() != first.value
    finally:
        first.release()
