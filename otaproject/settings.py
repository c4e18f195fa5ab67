"""Settings for the OTA server, read from the environment (and an optional `.env` file)."""

from __future__ import annotations

import datetime
import importlib.util
import logging
import math
import os
import re
import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from otaproject.private_files import create_private_dir, restrict_umask, write_private_file

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A `.env` beside manage.py is a convenience for development; real deployments set variables.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def env_secret(name: str, *, default: str | None = None) -> str | None:
    """Read NAME_FILE (a mounted secret) before NAME, so secrets stay out of process listings."""
    file_path = env.str(f"{name}_FILE", default="")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path!r} cannot be read: {exc}") from exc
    return env.str(name, default=default)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, *, default: bool) -> bool:
    """A boolean that refuses anything but clear yes/no words, unlike a silent False."""
    raw = env.str(name, default="1" if default else "0").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}"
    )


def _check_range(name: str, value: float, low: float | None, high: float | None) -> None:
    if low is not None and value < low:
        raise ImproperlyConfigured(f"{name} must be at least {low}; got {value}")
    if high is not None and value > high:
        raise ImproperlyConfigured(f"{name} must be at most {high}; got {value}")


def env_int(name: str, *, default: int, low: int | None = None, high: int | None = None) -> int:
    """A whole number in range, or a start-up error naming the variable (not a ValueError)."""
    raw = env.str(name, default=str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number; got {raw!r}") from None
    _check_range(name, value, low, high)
    return value


def env_float(
    name: str, *, default: float, low: float | None = None, high: float | None = None
) -> float:
    raw = env.str(name, default=str(default)).strip()
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be a number; got {raw!r}")
    _check_range(name, value, low, high)
    return value


def env_rate(name: str, *, default: str) -> str:
    """A throttle rate as DRF reads it: COUNT/second|minute|hour|day."""
    raw = env.str(name, default=default).strip()
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", raw):
        raise ImproperlyConfigured(f"{name} must look like 600/minute (s, m, h or d); got {raw!r}")
    return raw


def env_url(name: str, *, default: str, schemes: tuple[str, ...], example: str) -> str:
    """A URL with one of `schemes`, a host and a numeric port if it names one."""
    raw = env.str(name, default=default).strip()
    if not raw:
        return raw
    parts = urlsplit(raw)
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} has a port that is not a number 0-65535: {raw!r}"
        ) from None
    if parts.scheme not in schemes or not (parts.hostname or parts.scheme == "unix"):
        raise ImproperlyConfigured(f"{name} must look like {example}; got {raw!r}")
    return raw


def env_dotted_path(name: str, *, default: str) -> str:
    """A dotted path to a class whose module exists (found, not imported: settings load first)."""
    raw = env.str(name, default=default).strip()
    module, _, attribute = raw.rpartition(".")
    if not module or not attribute:
        raise ImproperlyConfigured(f"{name} must be a dotted path like package.module.Class")
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:
        found = False
    if not found:
        raise ImproperlyConfigured(f"{name}={raw!r}: no module {module}")
    return raw


DEBUG = env_bool("DEBUG", default=False)
PRODUCTION = env_bool("OTA_PRODUCTION", default=False)

VAR_DIR = Path(env.str("OTA_VAR_DIR", default=str(BASE_DIR / "var")))
# var/ holds the database (tokens, sessions, password hashes), the secret key and private keys:
# everything this process creates is private to the server's user, and var/ itself is 0700.
restrict_umask()
try:
    create_private_dir(VAR_DIR)
except OSError as exc:
    raise ImproperlyConfigured(f"OTA_VAR_DIR={str(VAR_DIR)!r} cannot be created: {exc}") from exc
PKI_DIR = Path(env.str("OTA_PKI_DIR", default=str(VAR_DIR / "pki")))
SIGNING_KEY_DIR = Path(env.str("OTA_SIGNING_KEY_DIR", default=str(VAR_DIR / "signing")))
MEDIA_ROOT = Path(env.str("OTA_MEDIA_ROOT", default=str(VAR_DIR / "media")))
PACKAGE_DIR = Path(env.str("OTA_PACKAGE_DIR", default=str(VAR_DIR / "packages")))
MEDIA_URL = "/media/"


def _development_secret_key() -> str:
    """Generate a key once and keep it under var/, so sessions survive restarts in development."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        write_private_file(key_file, secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) is required when OTA_PRODUCTION=1"
        )
    SECRET_KEY = _development_secret_key()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
if not ALLOWED_HOSTS:
    # Django would answer every request 400 (Bad Request) without saying why.
    raise ImproperlyConfigured("ALLOWED_HOSTS must name at least one host, e.g. localhost")
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS",
    default=["https://localhost:8444", "https://127.0.0.1:8444"],
)
for _origin in CSRF_TRUSTED_ORIGINS:
    if not re.fullmatch(r"https?://[^/\s]+", _origin):
        raise ImproperlyConfigured(
            f"CSRF_TRUSTED_ORIGINS must list origins like https://HOST:PORT; got {_origin!r}"
        )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    # Before axes: its commands of the same names (axes_reset*) replace axes' unaudited ones.
    "core",
    "axes",
    "csp",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_prometheus",
    "vehicles",
    "ecus",
    "firmware",
    "uptane",
    "ota",
    "diagnostics",
    "pqc",
    "webhooks",
    "telematics",
    "console",
    # The project package itself, for the command that composes every part: runota.
    "otaproject",
]

MIDDLEWARE = [
    # First and (almost) last: request counts and latencies by view for /metrics.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Request id, vehicle and campaign for every log line below it, and the access log.
    "core.logs.RequestContext",
    "django.middleware.security.SecurityMiddleware",
    # The console's CSS and JS, compressed and with a year's cache on their hashed names.
    "otaproject.staticfiles.ConsoleStaticFiles",
    "core.input_guards.RefuseNulCharacters",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "core.db_outage.DatabaseOutageMiddleware",
    "core.metrics.UpdateCheckTimer",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last: turns a login refused for lock-out into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "otaproject.urls"
ASGI_APPLICATION = "otaproject.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite under var/ on a fresh machine; PostgreSQL (psycopg 3, pooled) when DATABASE_URL says so.
_DATABASE_ENGINES = {"django.db.backends.postgresql", "django.db.backends.sqlite3"}
_DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'ota.sqlite3'}")
try:
    known = environ.Env.DB_SCHEMES.get(urlsplit(_DATABASE_URL).scheme) in _DATABASE_ENGINES
    _database = environ.Env.db_url_config(_DATABASE_URL) if known else {}
except ValueError:  # a port that is not a number
    known = False
if not known:
    raise ImproperlyConfigured(
        "DATABASE_URL must look like postgres://USER@HOST:5432/NAME or sqlite:////PATH; "
        f"got {_DATABASE_URL!r}"
    )
if not _database.get("NAME"):
    raise ImproperlyConfigured(
        f"DATABASE_URL names no database: {_DATABASE_URL!r} (postgres://USER@HOST:5432/NAME)"
    )
DATABASES = {"default": _database}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN", default=1, low=0),
        # Request threads (OTA_REQUEST_CONCURRENCY), the reactor's thread pool (10: MQTT front
        # binding checks, TLS session records), the bridge's workers and the campaign worker.
        "max_size": env_int("DATABASE_POOL_MAX", default=24, low=1),
        # During an outage a request waits this long for a connection, then answers 503.
        "timeout": env_float("DATABASE_POOL_TIMEOUT", default=3.0, low=0.1),
    }
    DATABASES["default"]["OPTIONS"].setdefault(
        "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", default=3, low=1)
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the listeners, the bridge and the campaign worker share the file without
    # "database is locked" on every concurrent write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )

# The database password from a mounted secret (DATABASE_PASSWORD_FILE), so that DATABASE_URL,
# visible in process listings and manifests, need not carry it.
_database_password = env_secret("DATABASE_PASSWORD", default="")
if _database_password:
    DATABASES["default"]["PASSWORD"] = _database_password

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url(
    "REDIS_URL", default="", schemes=("redis", "rediss", "unix"), example="redis://HOST:6379/0"
)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# An empty MQTT_URL means: start the embedded broker inside `manage.py runota`.
MQTT_URL = (
    env_url("MQTT_URL", default="", schemes=("mqtt", "tcp"), example="mqtt://HOST:1883") or None
)
# The embedded broker needs a port of its own: the bridge and the front connect to it by number.
MQTT_EMBEDDED_PORT = env_int("MQTT_EMBEDDED_PORT", default=1884, low=1, high=65535)
# Topics live under "<root>/<VIN>/..."; a separate root lets test runs share one broker.
MQTT_TOPIC_ROOT = env.str("MQTT_TOPIC_ROOT", default="vehicle")
if not re.fullmatch(r"[^/+#\x00]+(/[^/+#\x00]+)*", MQTT_TOPIC_ROOT):
    # A wildcard or an empty level would make the bridge's subscriptions match other topics.
    raise ImproperlyConfigured(
        "MQTT_TOPIC_ROOT must be topic levels like vehicle or a/b, without +, # or empty "
        f"levels; got {MQTT_TOPIC_ROOT!r}"
    )
MQTT_MAX_PAYLOAD_BYTES = env_int("MQTT_MAX_PAYLOAD_BYTES", default=64 * 1024, low=1)
# Off: telemetry history commits without waiting for the WAL flush (PostgreSQL only); a server
# crash may lose the last fraction of a second of telemetry, never OTA or diagnostics data.
TELEMETRY_SYNCHRONOUS_COMMIT = env_bool("TELEMETRY_SYNCHRONOUS_COMMIT", default=True)
# Empty: "ota-bridge-<hostname>-<slot>", the lowest slot no other process on the host holds, so
# each bridge instance keeps its own persistent session.
MQTT_BRIDGE_CLIENT_ID = env.str("MQTT_BRIDGE_CLIENT_ID", default="")
# Where bridges lock their client ids: one directory for the whole host (not under VAR_DIR), so
# two servers with different var directories still never claim the same id.
MQTT_BRIDGE_LOCK_DIR = Path(
    env.str(
        "MQTT_BRIDGE_LOCK_DIR",
        default=str(Path(tempfile.gettempdir()) / f"ota-mqtt-bridge-{os.getuid()}"),
    )
)
# How long the broker keeps a bridge's session (and its queued messages) after it goes away.
MQTT_BRIDGE_SESSION_EXPIRY = env_int("MQTT_BRIDGE_SESSION_EXPIRY", default=120, low=0)
# Shared subscriptions split the stream between several bridges; Mosquitto 2.0 does not restore
# them after a broker restart, so one bridge is safer with plain ones.
MQTT_SHARED_SUBSCRIPTIONS = env_bool("MQTT_SHARED_SUBSCRIPTIONS", default=False)
# Logins on an external broker (MQTT_URL); the bridge may also take its own from the URL.
MQTT_BRIDGE_USERNAME = env_secret("MQTT_BRIDGE_USERNAME", default="")
MQTT_BRIDGE_PASSWORD = env_secret("MQTT_BRIDGE_PASSWORD", default="")
MQTT_FRONT_USERNAME = env_secret("MQTT_FRONT_USERNAME", default="")
MQTT_FRONT_PASSWORD = env_secret("MQTT_FRONT_PASSWORD", default="")

OTA_BIND_HOST = env.str("OTA_BIND_HOST", default="127.0.0.1")
OTA_VEHICLE_PORT = env_int("OTA_VEHICLE_PORT", default=8443, low=0, high=65535)
OTA_CONSOLE_PORT = env_int("OTA_CONSOLE_PORT", default=8444, low=0, high=65535)
OTA_MQTT_TLS_PORT = env_int("OTA_MQTT_TLS_PORT", default=8883, low=0, high=65535)
# Several runota processes on one host may share each port (SO_REUSEPORT); the kernel spreads
# connections between them. Off: a second process on the same port fails to start.
OTA_REUSE_PORT = env_bool("OTA_REUSE_PORT", default=False)
OTA_SERVER_HOSTNAMES = env.list("OTA_SERVER_HOSTNAMES", default=["localhost"])
# Vehicles download from here (update checks and package URLs name it).
OTA_PUBLIC_BASE_URL = (
    env_url(
        "OTA_PUBLIC_BASE_URL",
        default="",
        schemes=("https", "http"),
        example="https://HOST:8443",
    )
    or f"https://localhost:{OTA_VEHICLE_PORT}"
)
# The HTTP edge of the vehicle and console listeners, applied while bytes arrive.
# Request bodies: vehicles and clients presenting credentials, anonymous clients (firmware
# uploads presenting credentials may reach FIRMWARE_MAX_UPLOAD_BYTES).
OTA_MAX_BODY_BYTES = env_int("OTA_MAX_BODY_BYTES", default=8 * 1024**2, low=1)
OTA_ANONYMOUS_MAX_BODY_BYTES = env_int("OTA_ANONYMOUS_MAX_BODY_BYTES", default=1024**2, low=1)
# A request head (from the connection, or from its first byte on a kept-alive connection) must
# be complete within this time, however slowly it trickles in.
OTA_HTTP_HEAD_TIMEOUT_SECONDS = env_float("OTA_HTTP_HEAD_TIMEOUT_SECONDS", default=10.0, low=0.1)
# A connection with no request in progress and nothing received for this long is closed.
OTA_HTTP_IDLE_TIMEOUT_SECONDS = env_float("OTA_HTTP_IDLE_TIMEOUT_SECONDS", default=60.0, low=0.1)
OTA_HTTP_MAX_HEADERS = env_int("OTA_HTTP_MAX_HEADERS", default=100, low=1)
OTA_HTTP_MAX_HEAD_BYTES = env_int("OTA_HTTP_MAX_HEAD_BYTES", default=16 * 1024, low=1)
# Open connections per listener, in total and from one client address (vehicles behind
# carrier NAT share addresses: keep the per-address bound generous).
OTA_MAX_CONNECTIONS = env_int("OTA_MAX_CONNECTIONS", default=4096, low=1)
OTA_MAX_CONNECTIONS_PER_IP = env_int("OTA_MAX_CONNECTIONS_PER_IP", default=256, low=1)
# HTTP requests running Django at once per process; the rest wait without a thread. Keep it
# below DATABASE_POOL_MAX, which the MQTT front's and bridge's threads share.
OTA_REQUEST_CONCURRENCY = env_int("OTA_REQUEST_CONCURRENCY", default=8, low=1)
# An MQTT client must finish the TLS handshake and send its CONNECT within this time.
OTA_MQTT_CONNECT_TIMEOUT_SECONDS = env_float(
    "OTA_MQTT_CONNECT_TIMEOUT_SECONDS", default=10.0, low=0.1
)
# How often the listeners cut open connections whose client certificate was revoked since.
OTA_REVOCATION_CHECK_SECONDS = env_float("OTA_REVOCATION_CHECK_SECONDS", default=5.0, low=0.1)

# Encrypts the PKI's private keys on disk; read from PKI_KEY_PASSPHRASE_FILE or PKI_KEY_PASSPHRASE.
PKI_KEY_PASSPHRASE = env_secret("PKI_KEY_PASSPHRASE", default="")
PQC_DEFAULT_CONFIG = env_int("PQC_DEFAULT_CONFIG", default=1, low=0)
PQC_ALLOW_CLASSICAL = env_bool("PQC_ALLOW_CLASSICAL", default=False)
PQC_CONFIG_FILE = BASE_DIR / "config" / "pqc_configs.yaml"
ECU_REGISTRY_FILE = BASE_DIR / "config" / "ecu_registry.yaml"

FIRMWARE_MAX_UPLOAD_BYTES = env_int("FIRMWARE_MAX_UPLOAD_BYTES", default=4 * 1024**3, low=1)
PACKAGE_ZSTD_LEVEL = env_int("PACKAGE_ZSTD_LEVEL", default=3, low=1, high=22)
# 0 = single-threaded compression, which is fastest when hashing shares a small machine.
PACKAGE_ZSTD_THREADS = env_int("PACKAGE_ZSTD_THREADS", default=0, low=0)
# "zstd-patch-from" (chosen by measurement, see docs/BENCHMARKS.md), "bsdiff4" or "none".
PACKAGE_DELTA_ALGORITHM = env.str("PACKAGE_DELTA_ALGORITHM", default="zstd-patch-from")
PACKAGE_DELTA_LEVEL = env_int("PACKAGE_DELTA_LEVEL", default=19, low=1, high=22)
PACKAGE_DELTA_MAX_BYTES = env_int("PACKAGE_DELTA_MAX_BYTES", default=256 * 1024**2, low=0)
OTA_PACKAGE_TTL_SECONDS = env_int("OTA_PACKAGE_TTL_SECONDS", default=30 * 86400, low=1)
OTA_PACKAGE_REFRESH_SECONDS = env_int("OTA_PACKAGE_REFRESH_SECONDS", default=86400, low=0)
if PACKAGE_DELTA_ALGORITHM not in {"zstd-patch-from", "bsdiff4", "none"}:
    raise ImproperlyConfigured(
        f"PACKAGE_DELTA_ALGORITHM must be zstd-patch-from, bsdiff4 or none, got {PACKAGE_DELTA_ALGORITHM!r}"
    )
# Uploads stream to disk past this size instead of being held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024**2
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2
FILE_UPLOAD_TEMP_DIR = None
# Django's default 0644 would open uploaded firmware and collected files to every local user.
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700

# Dotted paths of `start(stop_event)` callables that `manage.py runota` runs in daemon threads.
# The embedded broker starts first (it does nothing when MQTT_URL names a broker), then the
# bridge with its in-process worker, then the campaign worker.
RUNOTA_BACKGROUND_SERVICES = env.list(
    "RUNOTA_BACKGROUND_SERVICES",
    default=[
        "core.mqtt.broker.start",
        "telematics.bridge.start",
        "ota.worker.start",
        "webhooks.worker.start",
        "diagnostics.worker.start",
    ],
)
# runota restarts a failed background service with backoff; past this many failures in a row
# it stops with a non-zero exit status instead of serving without it.
RUNOTA_SERVICE_MAX_RESTARTS = env_int("RUNOTA_SERVICE_MAX_RESTARTS", default=5, low=0)
# Metrics (see docs/DEPLOYMENT.md): /metrics on the console listener for operators, and, when
# set, on 127.0.0.1:OTA_METRICS_PORT without authentication for a local Prometheus agent.
OTA_METRICS_PORT = env_int("OTA_METRICS_PORT", default=0, low=0, high=65535)
# prometheus_client reads it itself: a directory shared by this host's server processes, emptied
# before they start, so that each process's /metrics sums them all.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR!r} is not a directory"
    )
# Webhooks (webhooks/): plain http:// targets only outside production unless allowed.
OTA_WEBHOOK_ALLOW_HTTP = env_bool("OTA_WEBHOOK_ALLOW_HTTP", default=not PRODUCTION)
OTA_WEBHOOK_TIMEOUT_SECONDS = env_float("OTA_WEBHOOK_TIMEOUT_SECONDS", default=5.0, low=0.1)
# Attempts of one delivery before it is given up, and the backoff between them (doubling).
OTA_WEBHOOK_MAX_ATTEMPTS = env_int("OTA_WEBHOOK_MAX_ATTEMPTS", default=8, low=1)
OTA_WEBHOOK_BACKOFF_SECONDS = env_float("OTA_WEBHOOK_BACKOFF_SECONDS", default=30.0, low=0)
OTA_WEBHOOK_BACKOFF_MAX_SECONDS = env_float(
    "OTA_WEBHOOK_BACKOFF_MAX_SECONDS", default=3600.0, low=0
)
# What /readyz checks besides the background services (see core/health.py); a process without
# MQTT work may leave out "broker".
OTA_READINESS_CHECKS = env.list(
    "OTA_READINESS_CHECKS",
    default=["database", "channel_layer", "broker", "storage", "certificates"],
)
_unknown_checks = set(OTA_READINESS_CHECKS) - {
    "database", "channel_layer", "broker", "storage", "certificates"
}  # fmt: skip
if _unknown_checks:
    raise ImproperlyConfigured(f"OTA_READINESS_CHECKS: unknown checks {sorted(_unknown_checks)}")
# Package and media storage is unready below this much free space.
OTA_READY_MIN_FREE_BYTES = env_int("OTA_READY_MIN_FREE_BYTES", default=256 * 1024**2, low=0)
# Readiness marks CA and server certificates this close to expiry as "expiring".
OTA_CERT_WARN_DAYS = env_int("OTA_CERT_WARN_DAYS", default=30, low=0)
OTA_CAMPAIGN_TICK_SECONDS = env_int("OTA_CAMPAIGN_TICK_SECONDS", default=5, low=1)

OTA_VEHICLE_TIMEOUT_SECONDS = env_int("OTA_VEHICLE_TIMEOUT_SECONDS", default=6 * 3600, low=1)
# A download whose client reads nothing for this long is cut off (the listener's flow control).
OTA_RESPONSE_STALL_TIMEOUT_SECONDS = env_int(
    "OTA_RESPONSE_STALL_TIMEOUT_SECONDS", default=300, low=1
)

STORAGES = {
    "default": {
        "BACKEND": env_dotted_path(
            "OTA_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"
        ),
    },
    "staticfiles": {"BACKEND": "otaproject.staticfiles.StaticStorage"},
}
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Also serve straight from the apps' static folders, so pages rendered before collectstatic
# (tests, a fresh clone) have their styles; pages link the collected, hashed copies once they exist.
WHITENOISE_USE_FINDERS = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# One way to write a time everywhere, the admin included: 2026-12-05 13:05:09.
FORMAT_MODULE_PATH = ["otaproject.formats"]
USE_I18N = True
USE_TZ = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "vehicles.api.authentication.VehicleTLSAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "core.auth.OperatorTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "core.openapi.ErrorResponsesSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "core.pagination.BoundedPagination",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.negotiation.FormatCheckedNegotiation",
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 100,
    "DEFAULT_THROTTLE_RATES": {
        "vehicle": env_rate("OTA_VEHICLE_THROTTLE", default="600/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PQC OTA server API",
    "DESCRIPTION": "Vehicle and operator API of the post-quantum OTA update server.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from our own static files: the docs work offline and under the CSP.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a "status"; each choice set gets its own component name.
    "ENUM_NAME_OVERRIDES": {"FirmwareStatusEnum": "firmware.choices.FirmwareStatus"},
}

# "json": one JSON object per line with request, vehicle and campaign ids (core/logs.py).
OTA_LOG_FORMAT = env.str("OTA_LOG_FORMAT", default="plain")
if OTA_LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"OTA_LOG_FORMAT must be plain or json, got {OTA_LOG_FORMAT!r}")
# One line per HTTP request on both listeners (logger "ota.access").
OTA_ACCESS_LOG = env_bool("OTA_ACCESS_LOG", default=True)
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").strip().upper()
if not isinstance(logging.getLevelName(LOG_LEVEL), int):
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL; got {LOG_LEVEL!r}"
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "core.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": OTA_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "ota.access": {"level": "INFO" if OTA_ACCESS_LOG else "WARNING"},
        "django.db.backends": {"level": "INFO"},
        # The embedded broker logs every state-machine step at INFO; keep its warnings only.
        "amqtt": {"level": "WARNING"},
        "transitions": {"level": "WARNING"},
    },
}

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=True)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# The console speaks only HTTPS. Development keeps HSTS short: it binds the whole host name
# (localhost), every port included.
SECURE_HSTS_SECONDS = env_int(
    "SECURE_HSTS_SECONDS", default=31536000 if PRODUCTION else 3600, low=0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)

# Scripts and styles only from our static files; style attributes stay allowed for the
# dashboard's data-driven bar widths (they cannot run code). 'self' covers the dashboard's
# wss:// WebSocket to the same host and port.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Operator API tokens (knox): stored as SHA-512 digests, sent as "Authorization: Token <token>".
# TOKEN_TTL is the lifetime of a token from the login endpoint; `manage.py api_token create`
# sets its own.
REST_KNOX = {
    "TOKEN_TTL": datetime.timedelta(hours=env_int("OTA_API_TOKEN_TTL_HOURS", default=10, low=1)),
    "AUTH_HEADER_PREFIX": "Token",
}
OTA_TOKEN_LOGIN_THROTTLE = env_rate("OTA_TOKEN_LOGIN_THROTTLE", default="10/minute")

# Failed logins (console, admin, token endpoint) lock out that user name from that client
# address for a while (django-axes); each failure is audited.
AUTHENTICATION_BACKENDS = [
    "core.auth.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("OTA_LOGIN_FAILURE_LIMIT", default=5, low=1)
AXES_COOLOFF_TIME = datetime.timedelta(
    minutes=env_int("OTA_LOGIN_LOCKOUT_MINUTES", default=15, low=1)
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "core.login_audit.lockout_response"
