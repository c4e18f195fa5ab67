"""ASGI entry point: HTTP through Django, WebSockets through Channels consumers."""

from __future__ import annotations

import os
from typing import Any

import django
from django.core.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")
django.setup(set_prefix=False)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from core.request_limits import RequestBodyLimit  # noqa: E402
from otaproject.routing import websocket_urlpatterns  # noqa: E402
from telematics.consumers import CHANNEL_ROUTES  # noqa: E402

# Keyed by the listener names pqc.server writes into scope["ota_listener"].
LISTENER_URLCONFS = {
    "vehicle": "otaproject.urls_vehicle",
    "console": "otaproject.urls_console",
}


class ListenerASGIHandler(ASGIHandler):
    """Django, routing each request with the URLconf of the listener it came in on."""

    def create_request(self, scope: dict[str, Any], body_file: Any) -> Any:
        request, error_response = super().create_request(scope, body_file)
        urlconf = LISTENER_URLCONFS.get(scope.get("ota_listener") or "")
        if request is not None and urlconf is not None:
            request.urlconf = urlconf
        return request, error_response


class ConsoleOnlyWebSockets:
    """The dashboard's WebSockets are the console's: the vehicle listener refuses them."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("ota_listener") == "vehicle":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 4404})
            return
        await self.app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        # The console's CSS and JS are served by the same listener, through WhiteNoise
        # (otaproject.staticfiles): one process, no extra server.
        "http": RequestBodyLimit(ListenerASGIHandler()),
        "websocket": ConsoleOnlyWebSockets(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
        # Background channels (`manage.py runworker mqtt-inbound`) for MQTT ingest workers.
        "channel": ChannelNameRouter(CHANNEL_ROUTES),
    }
)
