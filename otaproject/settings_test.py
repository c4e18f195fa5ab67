"""Test settings: the main settings with fast hashing, in-memory channels and a temporary var/."""

from __future__ import annotations

import tempfile
from pathlib import Path

from otaproject.settings import *  # noqa: F403
from otaproject.settings import DATABASES, REST_FRAMEWORK

_TEST_VAR = Path(tempfile.mkdtemp(prefix="ota-test-var-"))
VAR_DIR = _TEST_VAR
PKI_DIR = _TEST_VAR / "pki"
SIGNING_KEY_DIR = _TEST_VAR / "signing"
MEDIA_ROOT = _TEST_VAR / "media"
PACKAGE_DIR = _TEST_VAR / "packages"
# Not a developer's collected files, whose manifest would name copies older than the sources.
STATIC_ROOT = _TEST_VAR / "staticfiles"

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"vehicle": "100000/minute"},
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A pool per test process is wasted on short tests and holds connections past teardown.
    DATABASES["default"]["OPTIONS"].pop("pool", None)
else:
    # A file, not SQLite's shared-cache memory database: the listeners, bridge and workers that
    # end-to-end tests run in threads take table locks there ("database table is locked").
    DATABASES["default"]["TEST"] = {"NAME": str(_TEST_VAR / "test.sqlite3")}
