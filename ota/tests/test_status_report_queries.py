"""A status report (six per fleet update) reads its update record once."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from ota.api.serializers import UpdateSerializer
from ota.choices import UpdateState
from ota.models import OtaUpdate
from ota.tests.test_api_status import NEW, downloaded, planned, report


def _selects_from(queries: list[dict], table: str) -> int:
    return sum(
        1 for q in queries if q["sql"].startswith("SELECT") and f'FROM "{table}"' in q["sql"]
    )


def _stored(update: OtaUpdate) -> dict:
    fresh = OtaUpdate.objects.select_related("vehicle", "wave").get(pk=update.pk)
    return dict(UpdateSerializer(fresh).data)


def test_progress_report_reads_the_update_once_with_its_campaign_and_wave(
    vehicle_client, offered_update
) -> None:
    update = planned(vehicle_client, offered_update)
    report(vehicle_client, update, sequence=1, vmg_state=1, percentage=10)

    with CaptureQueriesContext(connection) as queries:
        response = report(vehicle_client, update, sequence=2, vmg_state=1, percentage=20)

    assert response.status_code == 200, response.json()
    assert _selects_from(queries.captured_queries, "ota_otaupdate") == 1
    assert _selects_from(queries.captured_queries, "ota_campaign") == 0
    assert _selects_from(queries.captured_queries, "ota_campaignwave") == 0
    # The answer is the record as stored, as a fresh read would show it.
    assert response.json() == _stored(update)
    assert response.json()["progress_percent"] == 20


def test_final_report_answers_the_finished_record_as_stored(vehicle_client, offered_update) -> None:
    update = downloaded(vehicle_client, offered_update)
    report(vehicle_client, update, vmg_state=4, sequence=1)

    response = report(vehicle_client, update, vmg_state=6, sequence=2, running_versions=NEW)

    assert response.json()["state"] == UpdateState.SUCCEEDED
    assert response.json() == _stored(update)
    assert response.json()["finished_at"] is not None


def test_status_answer_does_not_build_its_serializer_fields_per_report(
    vehicle_client, offered_update, monkeypatch
) -> None:
    update = planned(vehicle_client, offered_update)
    report(vehicle_client, update, sequence=1, vmg_state=1, percentage=10)
    built = []
    original = UpdateSerializer.get_fields

    def counting(self):
        built.append(self)
        return original(self)

    monkeypatch.setattr(UpdateSerializer, "get_fields", counting)
    for sequence in (2, 3):
        response = report(vehicle_client, update, sequence=sequence, vmg_state=1, percentage=20)
        assert response.status_code == 200
        assert response.json() == _stored(update)
    # _stored() builds its own serializer each time; the view built none.
    assert len(built) == 2
