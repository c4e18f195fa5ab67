"""OpenAPI description of the mutual-TLS vehicle authentication."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class VehicleTLSScheme(OpenApiAuthenticationExtension):
    target_class = "vehicles.api.authentication.VehicleTLSAuthentication"
    name = "vehicleMutualTLS"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        # OpenAPI 3.0 has no mutualTLS type (3.1 does); the description carries the meaning.
        return {
            "type": "http",
            "scheme": "mutual-tls",
            "description": "The vehicle's client certificate (its VIN is the subject) on "
            "post-quantum TLS 1.3; no header is sent.",
        }
