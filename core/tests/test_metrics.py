"""/metrics: operators only, per-process counters and fleet-wide figures from the database."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from conftest import api_client_for
from core import metrics
from core.tokens import create_token
from diagnostics.models import InboundDrop
from ota.choices import UpdateState
from ota.models import OtaUpdate
from ota.tests import conftest as ota_fixtures
from vehicles.models import Vehicle

pytestmark = pytest.mark.django_db

# The OTA tests' fixtures: a running campaign's offered update, with MQTT publishes recorded.
ecm_release = ota_fixtures.ecm_release
fake_packages = ota_fixtures.fake_packages
offered_update = ota_fixtures.offered_update
published = ota_fixtures.published

REPO = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


def test_anonymous_and_viewer_are_refused_with_a_json_error(client, viewer) -> None:
    response = client.get("/metrics")
    assert response.status_code in (401, 403)
    assert "error" in response.json()
    response = api_client_for(viewer).get("/metrics")
    assert response.status_code == 403
    assert "operator" in response.json()["error"]["message"]


def test_the_vehicle_listener_does_not_serve_metrics() -> None:
    from django.urls import Resolver404, resolve

    assert resolve("/metrics", urlconf="otaproject.urls_console").url_name == "metrics"
    with pytest.raises(Resolver404):
        resolve("/metrics", urlconf="otaproject.urls_vehicle")


def test_an_operator_token_reads_the_metrics(client, fleet_operator) -> None:
    _token, plain = create_token(fleet_operator, actor=fleet_operator, lifetime=None)
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Token {plain}")
    assert response.status_code == 200
    body = response.content.decode()
    assert "ota_tls_handshakes_total" in body.replace("# HELP ", "")
    assert "django_http_requests_total_by_method" in body


def test_connected_vehicles_are_counted_by_configuration(operator_client, vehicle) -> None:
    Vehicle.objects.filter(pk=vehicle.pk).update(
        is_online=True, tls_group="X25519MLKEM768", tls_signature_algorithm="mldsa65"
    )
    found = scrape(operator_client)
    key = (
        "ota_vehicles_connected",
        (("group", "X25519MLKEM768"), ("signature_algorithm", "mldsa65")),
    )
    assert found[key] == 1


def test_drops_by_reason_come_from_the_bridge_counts(operator_client, fleet_operator) -> None:
    InboundDrop.objects.create(reason="schema", count=7)
    InboundDrop.objects.create(reason="unknown_vehicle", count=2)
    found = scrape(operator_client)
    assert found[("ota_mqtt_messages_dropped", (("reason", "schema"),))] == 7
    assert found[("ota_mqtt_messages_dropped", (("reason", "unknown_vehicle"),))] == 2


def test_campaign_progress_failure_ratio_and_bytes_served(
    operator_client,
    offered_update,
    vehicle_client,
) -> None:
    campaign_id = str(offered_update.campaign_id)
    assert vehicle_client.post("/api/v1/ota/check", {}, format="json").status_code == 200
    before = REGISTRY.get_sample_value("ota_package_bytes_served_total") or 0.0
    ota_fixtures.serve_packages(offered_update)
    served = sum(p["size"] for p in offered_update.plan["packages"])
    assert served > 0
    OtaUpdate.objects.filter(pk=offered_update.pk).update(state=UpdateState.FAILED)
    found = scrape(operator_client)
    assert found[("ota_campaign_progress_ratio", (("campaign", campaign_id),))] == 1.0
    assert found[("ota_campaign_failure_ratio", (("campaign", campaign_id),))] == 1.0
    assert found[("ota_campaign_updates", (("campaign", campaign_id), ("state", "failed")))] == 1
    assert found[("ota_package_bytes_served_total", ())] - before == served


def test_an_overdue_update_shows_as_worker_lag(operator_client, offered_update) -> None:
    from datetime import timedelta

    from django.utils import timezone

    assert scrape(operator_client)[("ota_worker_lag_seconds", ())] == 0
    # A queued offer of a reached wave, due five minutes ago and not yet made, is lag too.
    OtaUpdate.objects.filter(pk=offered_update.pk).update(
        state=UpdateState.QUEUED, next_action_at=timezone.now() - timedelta(minutes=5)
    )
    assert 300 <= scrape(operator_client)[("ota_worker_lag_seconds", ())] < 400
    OtaUpdate.objects.filter(pk=offered_update.pk).update(
        state=UpdateState.OFFERED, next_action_at=None
    )
    OtaUpdate.objects.filter(pk=offered_update.pk).update(
        deadline_at=timezone.now() - timedelta(minutes=10)
    )
    assert scrape(operator_client)[("ota_worker_lag_seconds", ())] >= 600


def test_the_webhook_backlog_is_reported(operator_client, fleet_operator) -> None:
    from webhooks import services

    services.register_endpoint(
        actor=fleet_operator,
        name="ops",
        url="https://hooks.example/",
        event_types=["vehicle.update"],
    )
    services.enqueue_event("vehicle.update", {"vin": "WVWZZZ1JZ3W386752"})
    found = scrape(operator_client)
    assert found[("ota_webhook_deliveries", (("status", "pending"),))] == 1
    assert found[("ota_webhook_oldest_due_seconds", ())] >= 0


def test_update_checks_are_timed(vehicle_client, operator_client) -> None:
    before = REGISTRY.get_sample_value("ota_update_check_seconds_count") or 0.0
    assert vehicle_client.post("/api/v1/ota/check", {}, format="json").status_code == 200
    vehicle_client.get("/api/v1/vehicles/not-a-route", format="json")
    assert REGISTRY.get_sample_value("ota_update_check_seconds_count") == before + 1


def test_the_loopback_port_serves_the_same_figures(transactional_db) -> None:
    import otaproject.metrics  # noqa: F401 (registers the fleet figures, as runota does)

    InboundDrop.objects.create(reason="oversized", count=3)
    server = metrics.serve_on_loopback(0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            found = samples(response.read().decode())
    finally:
        server.shutdown()
        server.server_close()
    assert found[("ota_mqtt_messages_dropped", (("reason", "oversized"),))] == 3


COUNT_IN_CHILD = """
import sys
from core import metrics
metrics.PACKAGE_BYTES_SERVED.inc(int(sys.argv[1]))
metrics.MQTT_IN.inc()
"""
SCRAPE_IN_CHILD = """
from core import metrics
body, _ = metrics.exposition()
print(body.decode())
"""


@pytest.mark.slow
def test_counters_are_summed_across_processes_in_multiprocess_mode(tmp_path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in ("100", "250"):
        subprocess.run([sys.executable, "-c", COUNT_IN_CHILD, count], cwd=REPO, env=env, check=True)
    out = subprocess.run(
        [sys.executable, "-c", SCRAPE_IN_CHILD],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = samples(out)
    assert found[("ota_package_bytes_served_total", ())] == 350
    assert found[("ota_mqtt_messages_total", (("direction", "in"),))] == 2
