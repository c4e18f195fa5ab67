from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from console.consumers import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED
from core.events import campaign_group, diagnostics_group, vehicle_group
from otaproject.routing import websocket_urlpatterns


def _as_user(user: Any):
    """The routing of the ASGI app, with the session user already resolved."""
    router = URLRouter(websocket_urlpatterns)

    async def app(scope, receive, send):
        return await router({**scope, "user": user}, receive, send)

    return app


def _connect(user: Any, path: str) -> tuple[bool, Any]:
    communicator = WebsocketCommunicator(_as_user(user), path)
    return async_to_sync(communicator.connect)()


@pytest.mark.django_db
def test_anonymous_websocket_is_refused() -> None:
    connected, code = _connect(AnonymousUser(), "/ws/fleet/")
    assert not connected
    assert code == CLOSE_UNAUTHENTICATED


@pytest.mark.django_db
def test_user_without_role_is_refused() -> None:
    nobody = User.objects.create_user("nobody")
    connected, code = _connect(nobody, "/ws/campaigns/1/")
    assert not connected
    assert code == CLOSE_FORBIDDEN


@pytest.mark.django_db
def test_malformed_vin_is_refused(viewer) -> None:
    connected, code = _connect(viewer, "/ws/vehicles/NOTAVIN/")
    assert not connected
    assert code == CLOSE_NOT_FOUND


def _event_round_trip(user: Any, path: str, group: str, event: dict) -> dict:
    """Connect, publish `event` to `group` and return what the browser side receives."""

    async def run() -> dict:
        communicator = WebsocketCommunicator(_as_user(user), path)
        connected, _ = await communicator.connect()
        assert connected
        hello = await communicator.receive_json_from(timeout=2)
        assert hello == {"kind": "hello", "group": group}
        await get_channel_layer().group_send(group, {"type": "ota.event", "event": event})
        received = await communicator.receive_json_from(timeout=2)
        await communicator.disconnect()
        return received

    return async_to_sync(run)()


@pytest.mark.django_db
def test_campaign_events_reach_the_viewer(viewer) -> None:
    event = {"kind": "update_state", "vin": "WVWZZZ1JZ3W386752", "state": "installing"}
    assert _event_round_trip(viewer, "/ws/campaigns/7/", campaign_group(7), event) == event


@pytest.mark.django_db
def test_vehicle_events_reach_the_operator(fleet_operator) -> None:
    vin = "WVWZZZ1JZ3W386752"
    event = {"kind": "telemetry", "vin": vin}
    path = f"/ws/vehicles/{vin.lower()}/"
    assert _event_round_trip(fleet_operator, path, vehicle_group(vin), event) == event


@pytest.mark.django_db
def test_diagnostic_answers_reach_the_console(fleet_operator) -> None:
    request_id = "0b7f2a52-8a0d-4c55-9f0e-7d3c2a1b9e01"
    event = {"kind": "diagnostic_result", "ecu_id": "ECU_001", "outcome": "positive"}
    path = f"/ws/diagnostics/{request_id}/"
    group = diagnostics_group(request_id)
    assert _event_round_trip(fleet_operator, path, group, event) == event
