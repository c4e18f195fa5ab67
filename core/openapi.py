"""The OpenAPI description of what every operation can answer besides success.

Settings REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]: each operation gets the error responses its
view can produce, all with the one error body of core.api.exception_handler, so a client
generated from /api/schema/ knows every status it may receive.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.permissions import AllowAny, OperandHolder

from core.pagination import KeysetPagination

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string", "example": "invalid"},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "description": "each input at fault and what is wrong with it",
                    "additionalProperties": {},
                },
            },
        }
    },
}

DESCRIPTIONS = {
    "400": "invalid input; `fields` names each field at fault (`body` for malformed JSON)",
    "401": "not authenticated",
    "403": "not allowed: a missing role, or another vehicle's resource",
    "404": "no such resource (or not the caller's)",
    "409": "valid, but clashes with the current state",
    "413": "request body larger than allowed",
    "415": "request body in a media type the operation does not take",
    "429": "throttled; retry after `Retry-After` seconds",
    "416": "the requested range starts past the end of the content",
    "503": "the database is unavailable; retry after `Retry-After` seconds",
}

# Operations whose services refuse a request that clashes with stored state (ConflictError).
_CONFLICTS = [
    ("POST", r"/api/v1/vehicles/register"),
    ("POST", r"/api/v1/ota/(status|package)"),
    ("POST", r"/api/v1/firmware/upload"),
    ("POST", r"/api/v1/campaigns"),
    ("(PUT|PATCH|DELETE)", r"/api/v1/campaigns/\{id\}"),
    ("POST", r"/api/v1/campaigns/\{id\}/[a-z-]+"),
    ("POST", r"/api/v1/diagnostics/(send|control)"),
    # A name already taken; a filter a campaign targets cannot go.
    ("POST", r"/api/v1/saved-filters"),
    ("(PUT|PATCH|DELETE)", r"/api/v1/saved-filters/\{id\}"),
]


# Operations whose request bodies name other resources (a vehicle, campaign or update) that
# may not exist.
_BODY_REFERENCES = [
    ("POST", r"/api/v1/diagnostics/(send|control)"),
    ("POST", r"/api/v1/ota/package"),
]


def _permission_classes(permission: Any) -> set[type]:
    """The permission classes inside a permission, composed ones (`A | B`) included."""
    if isinstance(permission, OperandHolder):
        return _permission_classes(permission.op1_class) | _permission_classes(permission.op2_class)
    return {permission if isinstance(permission, type) else type(permission)}


class ErrorResponsesSchema(AutoSchema):
    """drf-spectacular's schema, plus the error responses each operation can give."""

    def get_paginated_name(self, serializer_name: str) -> str:
        # Pages by key carry count_exact, pages by offset do not: a serializer listed both ways
        # needs two page schemas, or the last one generated overwrites the other.
        if isinstance(self._get_paginator(), KeysetPagination):
            return f"Paginated{serializer_name}KeysetList"
        return super().get_paginated_name(serializer_name)

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        component = ResolvedComponent(
            name="Error", type=ResolvedComponent.SCHEMA, object="Error", schema=ERROR_SCHEMA
        )
        self.registry.register_on_missing(component)
        responses = operation.setdefault("responses", {})
        for code in self._error_codes(operation):
            response = responses.setdefault(code, {"description": DESCRIPTIONS[code]})
            response.setdefault("description", DESCRIPTIONS[code])
            response["content"] = {"application/json": {"schema": component.ref}}
        return operation

    def _error_codes(self, operation: dict[str, Any]) -> list[str]:
        method, path = self.method.upper(), self.path
        has_body = "requestBody" in operation
        has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
        permissions = set()
        for permission in self.view.get_permissions():
            permissions |= _permission_classes(permission)
        secured = permissions - {AllowAny}
        vehicle_callable = any("Vehicle" in cls.__name__ for cls in permissions)
        codes = []
        if has_body or has_query:
            codes.append("400")
        if secured:
            codes += ["401", "403"]
        references = any(
            re.fullmatch(m, method) and re.fullmatch(p, path) for m, p in _BODY_REFERENCES
        )
        if "{" in path or vehicle_callable or references:
            # A vehicle whose certificate is not registered yet gets 404 on its endpoints.
            codes.append("404")
        if any(re.fullmatch(m, method) and re.fullmatch(p, path) for m, p in _CONFLICTS):
            codes.append("409")
        if has_body:
            codes += ["413", "415"]
        if self.view.get_throttles():
            codes.append("429")
        if "206" in operation.get("responses", {}):
            codes.append("416")
        # Every operation reaches the database; during an outage it answers 503 at once.
        codes.append("503")
        return codes
