"""The console's static files: content-hashed names, compressed, cached by browsers for a year."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.management import call_command
from django.test import Client, override_settings


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """Static files collected as `scripts/serve` collects them, into a fresh STATIC_ROOT."""
    # Once for the module: compressing every collected file takes seconds.
    with override_settings(STATIC_ROOT=tmp_path_factory.mktemp("static")):
        call_command("collectstatic", "--no-input", "-v0")
        yield


def test_collected_files_are_hashed_compressed_and_cached_for_a_year(collected) -> None:
    url = staticfiles_storage.url("console/dashboard.css")
    assert url != "/static/console/dashboard.css"  # the name carries the content's hash
    response = Client().get(url, headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "immutable" in response["Cache-Control"]
    assert "max-age=315360000" in response["Cache-Control"]


@pytest.mark.django_db
def test_pages_link_the_hashed_names(collected, viewer) -> None:
    from console.tests.dashboard_helpers import logged_in

    body = logged_in(viewer).get("/").content.decode()
    assert staticfiles_storage.url("console/dashboard.css") in body
    assert staticfiles_storage.url("console/live.js") in body


def test_uncollected_files_still_serve_under_their_plain_names(settings, tmp_path) -> None:
    # A fresh clone's tests render and fetch pages without running collectstatic first.
    settings.STATIC_ROOT = tmp_path / "empty"
    assert staticfiles_storage.url("console/dashboard.css") == "/static/console/dashboard.css"
    response = Client().get("/static/console/dashboard.css")
    assert response.status_code == 200
    assert "immutable" not in response.get("Cache-Control", "")
