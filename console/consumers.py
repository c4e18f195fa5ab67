"""WebSocket consumers of the dashboard: authenticate, join one group, forward live events."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core.events import (
    FLEET_GROUP,
    bind_event_loop,
    campaign_group,
    diagnostics_group,
    vehicle_group,
)
from core.roles import Role, has_role

# Close codes in the application range (4000-4999) so the page script can tell them apart.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404

_VIN = re.compile(r"\A[A-HJ-NPR-Z0-9]{17}\Z")
_UUID = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


@database_sync_to_async
def _user_has_role(user: Any, role: str) -> bool:
    # Role lookup reads the user's groups, so it runs in the database thread.
    return has_role(user, role)


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """Base consumer: the session user must hold `required_role`; `group_name()` names the group."""

    required_role: str = Role.VIEWER

    def group_name(self) -> str | None:
        raise NotImplementedError

    async def connect(self) -> None:
        bind_event_loop(asyncio.get_running_loop())
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await _user_has_role(user, self.required_role):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        group = self.group_name()
        if group is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"kind": "hello", "group": group})

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group is not None:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Browsers only listen; anything they send is ignored rather than trusted.
        return

    async def ota_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message.get("event", {}))


class FleetConsumer(DashboardConsumer):
    def group_name(self) -> str | None:
        return FLEET_GROUP


class CampaignConsumer(DashboardConsumer):
    def group_name(self) -> str | None:
        return campaign_group(self.scope["url_route"]["kwargs"]["campaign_id"])


class VehicleConsumer(DashboardConsumer):
    def group_name(self) -> str | None:
        vin = str(self.scope["url_route"]["kwargs"]["vin"]).upper()
        return vehicle_group(vin) if _VIN.match(vin) else None


class DiagnosticsConsumer(DashboardConsumer):
    def group_name(self) -> str | None:
        request_id = str(self.scope["url_route"]["kwargs"]["request_id"]).lower()
        return diagnostics_group(request_id) if _UUID.match(request_id) else None
