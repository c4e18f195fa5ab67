from __future__ import annotations

import json

from django.core.management import call_command


def test_whole_schema_generates_without_warnings_and_names_every_seed_endpoint(
    db, tmp_path
) -> None:
    target = tmp_path / "schema.json"
    # --fail-on-warn turns any view the generator cannot describe into an error.
    call_command(
        "spectacular", validate=True, fail_on_warn=True, file=str(target), format="openapi-json"
    )
    paths = json.loads(target.read_text())["paths"]
    seed = [
        "/api/v1/vehicles/register",
        "/api/v1/vehicles/{vin}",
        "/api/v1/vehicles/{vin}/vci",
        "/api/v1/ecus",
        "/api/v1/ecus/{ecu_id}",
        "/api/v1/ecus/{ecu_id}/version",
        "/api/v1/ota/check",
        "/api/v1/ota/package",
        "/api/v1/ota/status",
        "/api/v1/diagnostics/send",
        "/api/v1/firmware/upload",
    ]
    assert [path for path in seed if path not in paths] == []
    assert any(path.startswith("/api/v1/ota/package/{") for path in paths)
    assert any(path.startswith("/api/v1/diagnostics/results/{") for path in paths)


def _schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def _ref_of(response: dict, media_type: str = "application/json") -> str:
    return response["content"][media_type]["schema"].get("$ref", "")


def test_every_operation_documents_its_errors_with_the_one_error_body(db) -> None:
    schema = _schema()
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = {code: r for code, r in operation["responses"].items() if code >= "400"}
            assert errors, f"{method} {path} documents no error"
            for code, response in errors.items():
                assert _ref_of(response) == "#/components/schemas/Error", (method, path, code)


def test_errors_are_documented_where_they_happen(db) -> None:
    paths = _schema()["paths"]
    status = set(paths["/api/v1/ota/status"]["post"]["responses"])
    assert {"400", "401", "403", "404", "409", "413", "429"} <= status
    assert "413" in paths["/api/v1/firmware/upload"]["post"]["responses"]
    assert "409" in paths["/api/v1/campaigns/{id}/start"]["post"]["responses"]
    listing = paths["/api/v1/vehicles"]["get"]
    assert "400" in listing["responses"] and "404" not in listing["responses"]
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 1000


def test_bodies_are_the_ones_the_server_sends(db) -> None:
    schema = _schema()
    paths, components = schema["paths"], schema["components"]["schemas"]
    control = _ref_of(paths["/api/v1/diagnostics/control"]["post"]["responses"]["202"])
    assert set(components[control.rsplit("/", 1)[1]]["properties"]) == {"batch_id", "commands"}
    patch = paths["/api/v1/campaigns/{id}"]["patch"]
    assert _ref_of(patch["responses"]["200"]).endswith("/CampaignDetail")
    assert "required" not in components[_ref_of(patch["requestBody"]).rsplit("/", 1)[1]]
    export = paths["/api/v1/audit-events/export"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"application/json", "text/csv"}
    check = paths["/api/v1/ota/check"]["post"]["requestBody"]["content"]["application/json"]
    assert check["schema"]["$ref"].endswith("/UpdateCheckRequest")


def test_outages_and_ranges_are_documented(db) -> None:
    paths = _schema()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert "503" in operation["responses"], (method, path)
    download = paths["/api/v1/ota/package/{package_id}"]["get"]["responses"]
    assert {"200", "206", "416"} <= set(download)
    assert _ref_of(download["416"]) == "#/components/schemas/Error"


def test_a_serializer_paged_by_key_and_by_offset_has_a_page_schema_for_each(db, tmp_path) -> None:
    """A campaign's vehicles (by key, with count_exact) and a vehicle's updates (by offset) both
    list updates: one page schema must not overwrite the other."""
    target = tmp_path / "schema.json"
    call_command("spectacular", file=str(target), format="openapi-json")
    schema = json.loads(target.read_text())

    def page_schema(path: str) -> dict:
        ref = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        name = ref["schema"]["$ref"].rsplit("/", 1)[1]
        return schema["components"]["schemas"][name]

    by_key = page_schema("/api/v1/campaigns/{id}/vehicles")
    by_offset = page_schema("/api/v1/vehicles/{vin}/updates")
    assert "count_exact" in by_key["required"]
    assert "count_exact" not in by_offset.get("required", [])
