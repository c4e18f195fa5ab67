"""Saved filters: CRUD through the API, audited, validated; campaigns target them."""

from __future__ import annotations

import pytest

from core.api import DomainError
from core.models import AuditEvent
from ota.models import OtaUpdate
from vehicles.models import SavedFilter
from vehicles.services import create_saved_filter, register_vehicle

AURORA_OLD_ECM = {"model_name": "Aurora", "ecu": "ECM", "version": "<2.0.0"}


def _create(client, **body):
    body.setdefault("name", "old Aurora ECMs")
    body.setdefault("query", AURORA_OLD_ECM)
    return client.post("/api/v1/saved-filters", body, format="json")


def _actions() -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="saved_filter")
        .order_by("id")
        .values_list("action", flat=True)
    )


def test_operator_creates_changes_and_deletes_a_saved_filter_with_audit(
    operator_client, viewer_client, vehicle, other_vehicle
) -> None:
    created = _create(operator_client)
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    listing = viewer_client.get("/api/v1/saved-filters").json()
    assert [row["name"] for row in listing["results"]] == ["old Aurora ECMs"]
    matching = viewer_client.get(f"/api/v1/saved-filters/{pk}/vehicles").json()
    assert matching["count"] == 2
    changed = operator_client.patch(
        f"/api/v1/saved-filters/{pk}", {"query": {"model_year": "2025"}}, format="json"
    )
    assert changed.status_code == 200, changed.content
    matching = viewer_client.get(f"/api/v1/saved-filters/{pk}/vehicles").json()
    assert [row["vin"] for row in matching["results"]] == [other_vehicle.vin]
    assert operator_client.delete(f"/api/v1/saved-filters/{pk}").status_code == 204
    assert not SavedFilter.objects.exists()
    assert _actions() == ["saved_filter.created", "saved_filter.changed", "saved_filter.deleted"]
    change = AuditEvent.objects.get(action="saved_filter.changed")
    assert change.before["query"] == AURORA_OLD_ECM
    assert change.after["query"] == {"model_year": "2025"}


def test_viewer_cannot_write_saved_filters(viewer_client, registry) -> None:
    assert _create(viewer_client).status_code == 403
    assert not SavedFilter.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": {"stauts": "active"}}, "query"),
        ({"query": {"version": "<two"}}, "query"),
        ({"query": "status=active"}, "query"),
        ({"name": ""}, "name"),
    ],
)
def test_a_bad_saved_filter_is_refused_and_nothing_is_stored(
    operator_client, registry, body, field
) -> None:
    response = _create(operator_client, **body)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not SavedFilter.objects.exists()
    assert _actions() == []


def test_a_duplicate_name_is_a_conflict(operator_client, registry) -> None:
    assert _create(operator_client).status_code == 201
    response = _create(operator_client)
    assert response.status_code == 409
    assert "name" in response.json()["error"]["fields"]


def test_a_campaign_on_a_saved_filter_takes_vehicles_that_match_later(
    fleet_operator, operator_client, registry
) -> None:
    from ota.engine import run_tick
    from ota.tests.conftest import launch_campaign, make_release

    saved = SavedFilter.objects.get(pk=_create(operator_client).json()["id"])
    first = register_vehicle(vin="WVWZZZ1JZ3W386752", model_name="Aurora", model_year=2026)
    register_vehicle(vin="5YJ3E1EA7KF317009", model_name="Borealis", model_year=2026)
    campaign = launch_campaign(fleet_operator, [make_release("ECM", "2.0.0")], target_filter=saved)
    assert set(
        OtaUpdate.objects.filter(campaign=campaign).values_list("vehicle__vin", flat=True)
    ) == {first.vin}
    later = register_vehicle(vin="1HGCM82633A004352", model_name="Aurora", model_year=2025)
    run_tick()
    assert OtaUpdate.objects.filter(campaign=campaign, vehicle=later).exists()
    response = operator_client.delete(f"/api/v1/saved-filters/{saved.pk}")
    assert response.status_code == 409
    assert SavedFilter.objects.filter(pk=saved.pk).exists()


def test_paging_parameters_are_not_part_of_a_saved_query(registry) -> None:
    with pytest.raises(DomainError, match="unknown filter parameter 'ordering'") as refused:
        create_saved_filter(name="sorted", query={"ordering": "vin"})
    assert refused.value.field == "query"
