from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "MQTT_URL", "REDIS_URL"}
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; from django.conf import settings; django.setup(); "
            "print(settings.DATABASES['default']['ENGINE'], settings.MQTT_URL, "
            "settings.CHANNEL_LAYERS['default']['BACKEND'])",
        ],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "otaproject.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_embedded_defaults_without_environment(tmp_path) -> None:
    result = _load_settings(OTA_VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        "None",
        "channels.layers.InMemoryChannelLayer",
    ]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_services_are_chosen_by_environment(tmp_path) -> None:
    result = _load_settings(
        OTA_VAR_DIR=str(tmp_path),
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/ota",
        MQTT_URL="mqtt://127.0.0.1:1883",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "mqtt://127.0.0.1:1883",
        "channels_redis.core.RedisChannelLayer",
    ]


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("OTA_VEHICLE_PORT", "eighty", "OTA_VEHICLE_PORT"),
        ("DEBUG", "maybe", "DEBUG"),
        ("MQTT_URL", "http://broker", "MQTT_URL"),
        ("OTA_PRODUCTION", "true", "SECRET_KEY"),
    ],
)
def test_malformed_values_fail_loudly(tmp_path, name: str, value: str, complaint: str) -> None:
    result = _load_settings(OTA_VAR_DIR=str(tmp_path), **{name: value})
    assert result.returncode != 0
    assert complaint in result.stderr or "invalid literal" in result.stderr
