from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from core.auth import VehicleIdentity
from core.roles import Role, has_role


def vehicle_identity(request: Any) -> VehicleIdentity | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, VehicleIdentity) else None


class IsVehicle(BasePermission):
    """The caller is a vehicle on mutual TLS."""

    message = "a vehicle client certificate is required"

    def has_permission(self, request: Any, view: Any) -> bool:
        return vehicle_identity(request) is not None


class _HasRole(BasePermission):
    role: str = ""

    def has_permission(self, request: Any, view: Any) -> bool:
        if vehicle_identity(request) is not None:
            return False
        return has_role(request.user, self.role)


class IsFleetEngineer(_HasRole):
    message = "the fleet_engineer role is required"
    role = Role.FLEET_ENGINEER


class IsOperator(_HasRole):
    message = "the operator role is required"
    role = Role.OPERATOR


class IsViewer(_HasRole):
    message = "the viewer role is required"
    role = Role.VIEWER
