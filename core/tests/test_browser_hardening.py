from __future__ import annotations

import datetime
import re
import subprocess
import sys
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import Client
from rest_framework.test import APIClient

from core.models import AuditEvent

ROOT = Path(__file__).resolve().parents[2]
LOGIN = "/accounts/login/"
TOKEN_LOGIN = "/api/v1/auth/login"


def _directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


@pytest.mark.django_db
def test_console_pages_carry_the_security_headers(fleet_operator) -> None:
    client = Client()
    client.force_login(fleet_operator)
    for page in (LOGIN, "/", "/campaigns/", "/api/docs/"):
        response = client.get(page, secure=True)
        assert response.status_code == 200, page
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert re.fullmatch(r"max-age=\d+", response["Strict-Transport-Security"])
        directives = _directives(response)
        assert directives["script-src"] == ["'self'"], page
        assert directives["style-src"] == ["'self'"]
        assert directives["frame-ancestors"] == ["'none'"]
        assert directives["object-src"] == ["'none'"]
        assert "'self'" in directives["connect-src"]


def test_cookies_are_secure_and_hsts_is_long_in_production(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; from django.conf import settings; django.setup(); "
            "print(settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, "
            "settings.SESSION_COOKIE_HTTPONLY, settings.SECURE_HSTS_SECONDS)",
        ],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "otaproject.settings",
            "OTA_VAR_DIR": str(tmp_path),
            "OTA_PRODUCTION": "1",
            "SECRET_KEY": "x" * 50,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "31536000"]


def test_templates_hold_no_inline_script_or_style() -> None:
    offenders = []
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text) or "<style" in text:
            offenders.append(template.name)
        if re.search(r"\son[a-z]+\s*=", text) or "javascript:" in text:
            offenders.append(template.name)
    assert offenders == []


@pytest.mark.django_db
def test_api_docs_load_swagger_ui_from_our_static_files(fleet_operator) -> None:
    client = Client()
    client.force_login(fleet_operator)
    page = client.get("/api/docs/", secure=True).content.decode()

    assert "cdn.jsdelivr.net" not in page
    assert "<style" not in page
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    static = [s for s in sources if s.startswith(settings.STATIC_URL)]
    assert any("swagger-ui-bundle" in s for s in static)
    for source in static:
        assert finders.find(source.removeprefix(settings.STATIC_URL)), source
    started_by = [s for s in sources if not s.startswith(settings.STATIC_URL)]
    assert started_by and all(s.startswith("/api/docs/") for s in started_by)
    script = client.get(started_by[0], secure=True)
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()


def _fail_console_login(client: Client, username: str) -> int:
    return client.post(LOGIN, {"username": username, "password": "not-it"}, secure=True).status_code


@pytest.mark.django_db
def test_console_login_locks_out_after_repeated_failures(fleet_operator, settings) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    codes = [_fail_console_login(client, "olga") for _ in range(3)]

    assert codes == [200, 200, 429]
    right_password = client.post(LOGIN, {"username": "olga", "password": "pw-olga"}, secure=True)
    assert right_password.status_code == 429
    assert "_auth_user_id" not in client.session
    assert right_password["Retry-After"] == str(15 * 60)
    failures = AuditEvent.objects.filter(action="auth.login_failed")
    assert failures.count() == 4
    assert [e.details["locked_out"] for e in failures] == [False, False, True, True]
    assert all("not-it" not in str(e.details) for e in failures)

    # Another user from the same address is not locked out by olga's failures.
    assert (
        client.post(LOGIN, {"username": "olga2", "password": "x"}, secure=True).status_code == 200
    )


@pytest.mark.django_db
def test_lockout_ends_after_the_cool_off(fleet_operator, settings) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    client = Client()
    assert [_fail_console_login(client, "olga") for _ in range(2)] == [200, 429]
    AccessAttempt.objects.update(
        attempt_time=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=16)
    )

    response = client.post(LOGIN, {"username": "olga", "password": "pw-olga"}, secure=True)

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(fleet_operator.pk)


@pytest.mark.django_db
def test_token_login_locks_out_with_a_json_error(fleet_operator, settings) -> None:
    from django.core.cache import cache

    cache.clear()
    settings.AXES_FAILURE_LIMIT = 2
    client = APIClient()
    wrong = {"username": "olga", "password": "not-it"}
    first = client.post(TOKEN_LOGIN, wrong, format="json")
    second = client.post(TOKEN_LOGIN, wrong, format="json")
    right = client.post(TOKEN_LOGIN, {"username": "olga", "password": "pw-olga"}, format="json")

    assert first.status_code == 401
    assert second.status_code == 429
    assert right.status_code == 429
    assert right.json()["error"]["code"] == "locked_out"
    assert "token" not in right.json()
    cache.clear()
