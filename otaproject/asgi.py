"""ASGI entry point: HTTP through Django, WebSockets through Channels consumers."""

from __future__ import annotations

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from core.mqtt.consumers import CHANNEL_ROUTES  # noqa: E402
from core.request_limits import RequestBodyLimit  # noqa: E402
from otaproject.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The console's CSS and JS are served by the same listener: one process, no extra server.
        "http": RequestBodyLimit(ASGIStaticFilesHandler(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
        # Background channels (`manage.py runworker mqtt-inbound`) for MQTT ingest workers.
        "channel": ChannelNameRouter(CHANNEL_ROUTES),
    }
)
