from __future__ import annotations

import pytest

from diagnostics.services import record_telemetry
from diagnostics.tests.factories import telemetry
from telematics.ingest import handle_message

pytestmark = pytest.mark.django_db


def test_viewer_sees_latest_values_and_recent_history(vehicle, viewer_client):
    for seq in (1, 2, 3):
        record_telemetry(
            vehicle=vehicle, report=telemetry(vehicle.vin, seq=seq, timestamp=1000 + seq)
        )
    body = viewer_client.get(f"/api/v1/diagnostics/telemetry/{vehicle.vin}?limit=2").json()
    assert body["is_online"] is True
    assert body["latest"]["seq"] == 3
    assert [row["seq"] for row in body["history"]] == [3, 2]


def test_bad_limit_names_the_field(vehicle, viewer_client):
    response = viewer_client.get(f"/api/v1/diagnostics/telemetry/{vehicle.vin}?limit=lots")
    assert response.status_code == 400
    assert "limit" in response.json()["error"]["fields"]


def test_vehicle_cannot_read_fleet_telemetry(vehicle, vehicle_client):
    assert vehicle_client.get(f"/api/v1/diagnostics/telemetry/{vehicle.vin}").status_code == 403


def test_drop_counters_are_visible(vehicle, viewer_client):
    handle_message(f"vehicle/{vehicle.vin}/telemetry", b"not json")
    assert viewer_client.get("/api/v1/diagnostics/inbound-drops").json() == {
        "dropped": {"bad_json": 1}
    }
