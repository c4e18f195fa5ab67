"""Every malformed setting stops the start with one line naming the variable."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTINGS_FILE = Path(settings.BASE_DIR) / "otaproject" / "settings.py"
MANAGE = Path(settings.BASE_DIR) / "manage.py"

BAD_VALUES = [
    ("DATABASE_URL", "foo://bar", "DATABASE_URL must look like postgres://"),
    ("DATABASE_URL", "notaurl", "DATABASE_URL must look like postgres://"),
    ("DATABASE_URL", "postgres://u@h:port/x", "DATABASE_URL must look like postgres://"),
    ("REDIS_URL", "localhost:6379", "REDIS_URL must look like redis://HOST:6379/0"),
    ("REDIS_URL", "redis://h:abc/0", "REDIS_URL has a port that is not a number"),
    ("MQTT_URL", "broker.local", "MQTT_URL must look like mqtt://HOST:1883"),
    ("MQTT_URL", "mqtt://h:x", "MQTT_URL has a port that is not a number"),
    ("OTA_VEHICLE_PORT", "abc", "OTA_VEHICLE_PORT must be a whole number; got 'abc'"),
    ("OTA_CONSOLE_PORT", "70000", "OTA_CONSOLE_PORT must be at most 65535; got 70000"),
    ("OTA_CAMPAIGN_TICK_SECONDS", "0", "OTA_CAMPAIGN_TICK_SECONDS must be at least 1"),
    ("OTA_HTTP_HEAD_TIMEOUT_SECONDS", "soon", "OTA_HTTP_HEAD_TIMEOUT_SECONDS must be a number"),
    ("OTA_HTTP_IDLE_TIMEOUT_SECONDS", "nan", "OTA_HTTP_IDLE_TIMEOUT_SECONDS must be a number"),
    ("OTA_MAX_CONNECTIONS", "0", "OTA_MAX_CONNECTIONS must be at least 1; got 0"),
    ("OTA_REVOCATION_CHECK_SECONDS", "-1", "OTA_REVOCATION_CHECK_SECONDS must be at least 0.1"),
    ("OTA_API_TOKEN_TTL_HOURS", "-1", "OTA_API_TOKEN_TTL_HOURS must be at least 1"),
    ("PACKAGE_ZSTD_LEVEL", "99", "PACKAGE_ZSTD_LEVEL must be at most 22"),
    ("OTA_VEHICLE_THROTTLE", "fast", "OTA_VEHICLE_THROTTLE must look like 600/minute"),
    ("LOG_LEVEL", "loud", "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ("DEBUG", "maybe", "DEBUG must be one of 1/0"),
    ("SECRET_KEY_FILE", "/nonexistent/secret", "SECRET_KEY_FILE='/nonexistent/secret' cannot"),
    ("DATABASE_URL", "postgres://", "DATABASE_URL names no database: 'postgres://'"),
    ("DATABASE_URL", "postgres://u@h:5432/", "DATABASE_URL names no database"),
    ("MQTT_EMBEDDED_PORT", "0", "MQTT_EMBEDDED_PORT must be at least 1; got 0"),
    ("OTA_PUBLIC_BASE_URL", "notaurl", "OTA_PUBLIC_BASE_URL must look like https://HOST:8443"),
    ("OTA_PUBLIC_BASE_URL", "ftp://h/", "OTA_PUBLIC_BASE_URL must look like https://HOST:8443"),
    ("MQTT_TOPIC_ROOT", "fleet/#", "MQTT_TOPIC_ROOT must be topic levels like vehicle or a/b"),
    ("MQTT_TOPIC_ROOT", "fleet/+", "MQTT_TOPIC_ROOT must be topic levels like vehicle or a/b"),
    ("MQTT_TOPIC_ROOT", "/vehicle", "MQTT_TOPIC_ROOT must be topic levels like vehicle or a/b"),
    ("MQTT_TOPIC_ROOT", "", "MQTT_TOPIC_ROOT must be topic levels like vehicle or a/b"),
    (
        "CSRF_TRUSTED_ORIGINS",
        "https://ok:8444,localhost:8444",
        "CSRF_TRUSTED_ORIGINS must list origins like https://HOST:PORT; got 'localhost:8444'",
    ),
    ("ALLOWED_HOSTS", "", "ALLOWED_HOSTS must name at least one host"),
    (
        "PROMETHEUS_MULTIPROC_DIR",
        "/nonexistent/metrics",
        "PROMETHEUS_MULTIPROC_DIR='/nonexistent/metrics' is not a directory",
    ),
    (
        "OTA_STORAGE_BACKEND",
        "storages.backends.s3.S3Storage",
        "OTA_STORAGE_BACKEND='storages.backends.s3.S3Storage': no module storages.backends.s3",
    ),
    ("OTA_STORAGE_BACKEND", "FileSystemStorage", "OTA_STORAGE_BACKEND must be a dotted path"),
]


def _load_settings(monkeypatch, tmp_path: Path, **env: str) -> dict:
    monkeypatch.setenv("OTA_VAR_DIR", str(tmp_path / "var"))
    for name in ("DATABASE_URL", "REDIS_URL", "MQTT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


@pytest.mark.parametrize(("name", "value", "message"), BAD_VALUES)
def test_a_bad_value_is_refused_naming_the_variable(monkeypatch, tmp_path, name, value, message):
    with pytest.raises(ImproperlyConfigured) as refused:
        _load_settings(monkeypatch, tmp_path, **{name: value})
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_good_values_are_read(monkeypatch, tmp_path) -> None:
    loaded = _load_settings(
        monkeypatch,
        tmp_path,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/ota",
        REDIS_URL="redis://127.0.0.1:6379/3",
        MQTT_URL="mqtt://127.0.0.1:1883",
        OTA_VEHICLE_PORT="0",
        OTA_HTTP_HEAD_TIMEOUT_SECONDS="2.5",
        LOG_LEVEL="warning",
    )
    assert loaded["DATABASES"]["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert loaded["REDIS_URL"] == "redis://127.0.0.1:6379/3"
    assert loaded["MQTT_URL"] == "mqtt://127.0.0.1:1883"
    assert loaded["OTA_VEHICLE_PORT"] == 0
    assert loaded["OTA_HTTP_HEAD_TIMEOUT_SECONDS"] == 2.5
    assert loaded["LOG_LEVEL"] == "WARNING"


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    clean.update(DJANGO_SETTINGS_MODULE="otaproject.settings", OTA_VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", ["check", "runota", "api_token"])
def test_manage_py_prints_one_line_and_exits_non_zero(tmp_path, command) -> None:
    done = _manage(tmp_path, command, OTA_VEHICLE_PORT="abc")
    assert done.returncode == 1
    assert (
        done.stderr == "configuration error: OTA_VEHICLE_PORT must be a whole number; got 'abc'\n"
    )


@pytest.mark.slow
def test_a_database_that_cannot_be_opened_is_one_line(tmp_path) -> None:
    done = _manage(tmp_path, "migrate", DATABASE_URL="sqlite:////nonexistent/dir/ota.sqlite3")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "database error: unable to open database file "
        "(SQLite file /nonexistent/dir/ota.sqlite3; check DATABASE_URL)"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_file_a_command_cannot_write_is_one_line(tmp_path) -> None:
    target = tmp_path / "missing-dir" / "schema.yaml"
    done = _manage(tmp_path, "spectacular", "--file", str(target))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: [Errno 2] No such file or directory: '{target}'"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_database_without_its_tables_says_to_migrate(tmp_path) -> None:
    done = _manage(tmp_path, "api_token", "list", "nobody")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "database error: no such table: auth_user "
        f"(SQLite file {tmp_path / 'ota.sqlite3'}; run `manage.py migrate` first)"
    )
