"""An unexpected error under /api/ answers in the API's JSON error shape, not an HTML page."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from ota.api import views as ota_views

pytestmark = pytest.mark.django_db


def _explode(request):
    raise RuntimeError("a bug")


@pytest.mark.parametrize("urlconf", ["otaproject.urls", "otaproject.urls_console"])
def test_an_api_500_is_json(monkeypatch, viewer, urlconf) -> None:
    monkeypatch.setattr(ota_views, "_audit_events", _explode)
    client = Client(raise_request_exception=False)
    client.force_login(viewer)
    with override_settings(ROOT_URLCONF=urlconf):
        response = client.get("/api/v1/audit-events/export")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"


def test_a_500_outside_the_api_is_the_html_page(rf) -> None:
    from otaproject.urls import server_error

    response = server_error(rf.get("/campaigns/"))
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
