from __future__ import annotations

from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

VEHICLE_AND_OPERATOR_PATHS = [
    "/api/v1/vehicles/register",
    "/api/v1/vehicles/{vin}",
    "/api/v1/vehicles/{vin}/vci",
    "/api/v1/vehicles/{vin}/software-history",
    "/api/v1/ecus",
    "/api/v1/ecus/{ecu_id}",
    "/api/v1/ecus/{ecu_id}/version",
    "/api/v1/ota/check",
    "/api/v1/ota/package",
    "/api/v1/ota/status",
    "/api/v1/campaigns",
    "/api/v1/campaigns/{id}/start",
    "/api/v1/campaigns/{id}/retry-failed",
    "/api/v1/campaigns/{id}/vehicles",
    "/api/v1/audit-events/export",
]


def test_openapi_schema_validates_and_describes_every_endpoint(db) -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    missing = [path for path in VEHICLE_AND_OPERATOR_PATHS if path not in schema["paths"]]
    assert missing == []
    status_post = schema["paths"]["/api/v1/ota/status"]["post"]
    assert "409" in status_post["responses"]
    assert "vehicleMutualTLS" in schema["components"]["securitySchemes"]


def test_schema_endpoint_answers(client) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == 200
