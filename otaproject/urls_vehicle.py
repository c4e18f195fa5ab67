"""The routes of the vehicle listener (see otaproject/urls.py)."""

from __future__ import annotations

from otaproject.urls import api_not_found, server_error
from otaproject.urls import vehicle_urlpatterns as urlpatterns

handler404 = api_not_found
handler500 = server_error

__all__ = ["handler404", "handler500", "urlpatterns"]
