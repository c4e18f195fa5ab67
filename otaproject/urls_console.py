"""The routes of the console listener (see otaproject/urls.py)."""

from __future__ import annotations

from otaproject.urls import console_urlpatterns as urlpatterns
from otaproject.urls import not_found, server_error

handler404 = not_found
handler500 = server_error

__all__ = ["handler404", "handler500", "urlpatterns"]
