"""The routes of the vehicle listener (see otaproject/urls.py)."""

from __future__ import annotations

from otaproject.urls import api_not_found
from otaproject.urls import vehicle_urlpatterns as urlpatterns

handler404 = api_not_found

__all__ = ["handler404", "urlpatterns"]
