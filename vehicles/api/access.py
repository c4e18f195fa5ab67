"""Who may see which vehicle: a vehicle itself, or an operator with at least the viewer role."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.throttling import ScopedRateThrottle

from core.permissions import vehicle_identity
from core.roles import Role, has_role
from vehicles.models import Vehicle

OWN_ONLY = "a vehicle may only access its own resources"


def registered_vehicle(request: Any) -> Vehicle:
    """The calling vehicle's row; an unregistered certificate must register first."""
    identity = vehicle_identity(request)
    if identity is None:
        raise PermissionDenied("a vehicle client certificate is required")
    if identity.vehicle is None:
        raise NotFound(f"vehicle {identity.vin} is not registered: POST /api/v1/vehicles/register")
    return identity.vehicle


def vehicle_for(request: Any, vin: str) -> Vehicle:
    """The vehicle `vin` if the caller may read it: itself, or a viewer (403 otherwise)."""
    identity = vehicle_identity(request)
    if identity is not None:
        if identity.vin != vin:
            # 403 rather than 404: the caller's own VIN is known to it, so nothing leaks.
            raise PermissionDenied(OWN_ONLY)
        return registered_vehicle(request)
    if not has_role(request.user, Role.VIEWER):
        raise PermissionDenied("the viewer role is required")
    vehicle = Vehicle.objects.filter(vin=vin).first()
    if vehicle is None:
        raise NotFound(f"no vehicle {vin}")
    return vehicle


class IsVehicleOrViewer(BasePermission):
    message = "a vehicle certificate or the viewer role is required"

    def has_permission(self, request: Any, view: Any) -> bool:
        return vehicle_identity(request) is not None or has_role(request.user, Role.VIEWER)


class VehicleRateThrottle(ScopedRateThrottle):
    """Rate limit per VIN (scope "vehicle"); operators are not limited by this scope."""

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        identity = vehicle_identity(request)
        if identity is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": identity.vin}


class VehicleThrottled:
    """Mixin for views vehicles call."""

    throttle_classes = [VehicleRateThrottle]
    throttle_scope = "vehicle"
