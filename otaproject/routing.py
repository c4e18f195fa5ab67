"""WebSocket routes of the operator dashboard."""

from __future__ import annotations

from django.urls import path, re_path

from console import consumers

websocket_urlpatterns: list = [
    path("ws/fleet/", consumers.FleetConsumer.as_asgi()),
    path("ws/campaigns/<int:campaign_id>/", consumers.CampaignConsumer.as_asgi()),
    re_path(r"^ws/vehicles/(?P<vin>[A-Za-z0-9]{1,17})/$", consumers.VehicleConsumer.as_asgi()),
    re_path(
        r"^ws/diagnostics/(?P<request_id>[0-9a-fA-F-]{36})/$",
        consumers.DiagnosticsConsumer.as_asgi(),
    ),
]
