"""Schema-driven fuzzing: every operation of the published OpenAPI document, called in-process
through the WSGI application with the caller each operation is meant for, must never answer
5xx and must answer only what the document describes (status, content type, body schema)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import tls_identity
from core.auth import TLS_META_KEY
from ota.tests import conftest as ota_fixtures

# The OTA app's fixtures (an offered update and what it needs), shared with these tests.
ecm_release = ota_fixtures.ecm_release
fake_packages = ota_fixtures.fake_packages
offered_update = ota_fixtures.offered_update
published = ota_fixtures.published

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

# Examples per operation: about 40 operations, so the whole run stays within a few minutes.
# OTA_FUZZ_EXAMPLES raises it for a longer hunt.
EXAMPLES_PER_OPERATION = int(os.environ.get("OTA_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CSRF_SECRET = "f" * 32

# Which caller each operation is for. Vehicle endpoints get the mutual-TLS identity that only
# the TLS layer can set (a WSGI environ key, never a header); operator endpoints a logged-in
# session of the persona holding the role they need.
VEHICLE_ROUTES = [
    (None, r"/api/v1/ota/(check|package|status)"),
    (None, r"/api/v1/ota/package/[^/]+"),
    (None, r"/api/v1/vehicles/[^/]+/vci"),
    (None, r"/api/v1/ecus/[^/]+/version"),
    (None, r"/api/v1/tls/.*"),
]
OPERATOR_ROUTES = [
    ("POST", r"/api/v1/firmware/upload", "fleet_engineer"),
    ("POST", r"/api/v1/diagnostics/send", "fleet_engineer"),
    ("POST", r"/api/v1/vehicles/register", "fleet_operator"),
    (None, r"/api/v1/audit-events.*", "admin_user"),
    ("GET", r".*", "viewer"),
    (None, r".*", "fleet_operator"),
]


def _persona_of(method: str, path: str) -> str:
    for route_method, pattern in VEHICLE_ROUTES:
        if route_method in (None, method) and re.fullmatch(pattern, path, re.DOTALL):
            return "vehicle"
    for route_method, pattern, persona in OPERATOR_ROUTES:
        if route_method in (None, method) and re.fullmatch(pattern, path, re.DOTALL):
            return persona
    raise AssertionError(f"no persona for {method} {path}")


class _InProcessApplication:
    """Django's WSGI application, with the caller of each request set as the listeners would."""

    def __init__(self) -> None:
        self.django = WSGIHandler()
        self.sessions: dict[str, str] = {}
        self.identity: dict[str, str] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable:
        path = environ["PATH_INFO"]
        persona = (
            _persona_of(environ["REQUEST_METHOD"], path) if path.startswith("/api/v1/") else ""
        )
        if persona == "vehicle":
            environ[TLS_META_KEY] = dict(self.identity)
        elif persona:
            environ["HTTP_COOKIE"] = f"sessionid={self.sessions[persona]}; csrftoken={CSRF_SECRET}"
            environ["HTTP_X_CSRFTOKEN"] = CSRF_SECRET
        return self.django(environ, start_response)


APPLICATION = _InProcessApplication()
# Loaded once, at collection, from the server itself: the document a client would download.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", APPLICATION)


@pytest.fixture
def callers(request: pytest.FixtureRequest, vehicle: Any, offered_update: Any) -> Iterator[None]:
    """Logged-in sessions of each operator persona, and the vehicle's TLS identity."""
    for persona in ("viewer", "fleet_operator", "fleet_engineer", "admin_user"):
        client = Client()
        client.force_login(request.getfixturevalue(persona))
        APPLICATION.sessions[persona] = client.cookies["sessionid"].value
    APPLICATION.identity = tls_identity(vehicle.vin)
    # As Django's test client does: the test's transaction is the connection, so the
    # per-request connection housekeeping must not close it.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        APPLICATION.sessions.clear()


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_without_5xx_and_as_documented(
    case: Any, vehicle: Any, callers: None
) -> None:
    if "vin" in (case.path_parameters or {}):
        # A random VIN is another vehicle's (403) or none (404) every time; the vehicle's own
        # reaches the validation and the services.
        case.path_parameters["vin"] = vehicle.vin
    case.call_and_validate(checks=CHECKS)
