"""WebSocket routes of the operator dashboard."""

from __future__ import annotations

websocket_urlpatterns: list = []
