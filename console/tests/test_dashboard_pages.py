from __future__ import annotations

import datetime
import json

import pytest
from django.utils import timezone

from console import dashboard
from console.tests.dashboard_helpers import logged_in, make_campaign, make_firmware, make_update
from vehicles.models import Vehicle


@pytest.mark.django_db
def test_fleet_page_counts_vehicles_by_state_and_online(viewer, vehicle, other_vehicle) -> None:
    Vehicle.objects.filter(pk=vehicle.pk).update(is_online=True, status="active")
    body = logged_in(viewer).get("/").content.decode()
    assert 'data-kpi="total">2<' in body
    assert 'data-kpi="online">1<' in body
    assert "Active" in body


@pytest.mark.django_db
def test_adoption_chart_shows_share_on_newest_release(viewer, vehicle) -> None:
    make_firmware("ECM", "1.1.2")
    ecm = next(row for row in dashboard.firmware_adoption() if row.code == "ECM")
    assert ecm.newest_version == "1.1.2"
    assert ecm.total == 3
    assert 0 < ecm.on_newest < ecm.total
    assert round(sum(segment.width for segment in ecm.segments)) == 100
    assert "on 1.1.2" in logged_in(viewer).get("/").content.decode()


@pytest.mark.django_db
def test_live_fragment_is_only_the_live_region(viewer, vehicle) -> None:
    body = logged_in(viewer).get("/?fragment=live").content.decode()
    assert "<html" not in body
    assert 'data-kpi="total"' in body


@pytest.mark.django_db
def test_fleet_alerts_flag_stuck_vehicles_and_failure_spikes(
    viewer, vehicle, other_vehicle
) -> None:
    campaign = make_campaign()
    stuck = make_update(campaign, vehicle, state="installing")
    long_ago = timezone.now() - datetime.timedelta(hours=3)
    type(stuck).objects.filter(pk=stuck.pk).update(updated_at=long_ago)
    for index in range(3):
        extra = make_campaign(name=f"c{index}")
        make_update(extra, other_vehicle, state="failed")
    titles = [alert.title for alert in dashboard.fleet_alerts()]
    assert f"{vehicle.vin} stuck in installing" in titles
    assert "Failure spike" in titles


@pytest.mark.django_db
def test_campaign_page_shows_ratios_waves_and_vehicle_states(
    viewer, vehicle, other_vehicle
) -> None:
    from ota.models import CampaignWave

    campaign = make_campaign()
    wave = CampaignWave.objects.create(campaign=campaign, index=0, percentage=100, status="active")
    make_update(campaign, vehicle, state="succeeded", wave=wave)
    make_update(campaign, other_vehicle, state="downloading", wave=wave, progress_percent=40)
    summary = dashboard.summarise_campaign(campaign)
    assert (summary.total, summary.succeeded, summary.in_progress) == (2, 1, 1)
    assert summary.success_ratio == 100.0
    assert summary.waves[0]["stats"].total == 2
    body = logged_in(viewer).get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-kpi="succeeded">1<' in body
    assert "Wave 1" in body
    assert f'data-vin="{other_vehicle.vin}"' in body
    assert "40 %" in body


@pytest.mark.django_db
def test_operator_creates_a_draft_campaign(fleet_operator, vehicle) -> None:
    from ota.models import Campaign

    firmware = make_firmware("ECM", "9.0.0")
    response = logged_in(fleet_operator).post(
        "/campaigns/new",
        {"name": "ECM 9", "firmware": [firmware.pk], "vehicles": vehicle.vin, "waves": "50, 100"},
    )
    campaign = Campaign.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/campaigns/{campaign.pk}/"
    assert (campaign.status, campaign.target_vins) == ("draft", [vehicle.vin])
    assert campaign.wave_percentages == [50.0, 100.0]


@pytest.mark.django_db
def test_campaign_form_rejects_bad_waves_and_stores_nothing(fleet_operator, registry) -> None:
    from ota.models import Campaign

    firmware = make_firmware("ECM", "9.0.0")
    response = logged_in(fleet_operator).post(
        "/campaigns/new", {"name": "ECM 9", "firmware": [firmware.pk], "waves": "ten"}
    )
    assert response.status_code == 400
    assert (
        "Waves (% of vehicles, cumulative): numbers separated by commas"
        in response.content.decode()
    )
    assert not Campaign.objects.exists()


@pytest.mark.django_db
def test_campaign_form_shows_the_service_error_on_its_field(fleet_operator, registry) -> None:
    from ota.models import Campaign

    firmware = make_firmware("ECM", "9.0.0")
    response = logged_in(fleet_operator).post(
        "/campaigns/new", {"name": "ECM 9", "firmware": [firmware.pk], "waves": "0, 100"}
    )
    assert response.status_code == 400
    assert "field-invalid" in response.content.decode()
    assert not Campaign.objects.exists()


@pytest.mark.django_db
def test_operator_starts_and_pauses_a_campaign(fleet_operator, vehicle) -> None:
    from ota.models import Campaign

    firmware = make_firmware("ECM", "9.0.0")
    client = logged_in(fleet_operator)
    client.post("/campaigns/new", {"name": "ECM 9", "firmware": [firmware.pk]})
    campaign = Campaign.objects.get()
    assert client.post(f"/campaigns/{campaign.pk}/start").status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "scheduled"
    client.post(f"/campaigns/{campaign.pk}/pause")
    campaign.refresh_from_db()
    assert campaign.status == "paused"


@pytest.mark.django_db
def test_refused_campaign_action_is_reported_and_changes_nothing(fleet_operator) -> None:
    campaign = make_campaign(status="completed")
    response = logged_in(fleet_operator).post(f"/campaigns/{campaign.pk}/pause", follow=True)
    assert "Could not pause the campaign: status: a completed campaign cannot be paused" in (
        response.content.decode()
    )
    campaign.refresh_from_db()
    assert campaign.status == "completed"


@pytest.mark.django_db
def test_unknown_campaign_action_is_not_found(fleet_operator) -> None:
    campaign = make_campaign(status="running")
    assert logged_in(fleet_operator).post(f"/campaigns/{campaign.pk}/explode").status_code == 404


@pytest.mark.django_db
def test_vehicle_page_groups_ecus_by_zone_with_target_versions(viewer, vehicle) -> None:
    vehicle.ecus.filter(ecu_id="ECU_001").update(target_sw_version="9.0.0")
    zones = dashboard.ecus_by_zone(vehicle)
    assert [z["gateway"].gateway_id for z in zones][0] == "ZGW_FRONT"
    assert sum(len(z["ecus"]) for z in zones) == 100
    assert zones[0]["pending"] == 1
    body = logged_in(viewer).get(f"/vehicles/{vehicle.vin}/").content.decode()
    assert "→ 9.0.0" in body
    assert 'id="zone-ZGW_CHASSIS"' in body


@pytest.mark.django_db
def test_vehicle_page_names_the_negotiated_configuration(viewer, vehicle) -> None:
    Vehicle.objects.filter(pk=vehicle.pk).update(
        tls_group="MLKEM768", tls_signature_algorithm="mldsa65", tls_version="TLSv1.3"
    )
    body = logged_in(viewer).get(f"/vehicles/{vehicle.vin}/").content.decode()
    assert "ML-KEM-768 + ML-DSA-65" in body


@pytest.mark.django_db
def test_vehicle_page_shows_latest_telemetry(viewer, vehicle) -> None:
    from diagnostics.models import TelemetryLatest

    now = timezone.now()
    TelemetryLatest.objects.create(
        vehicle=vehicle, values={"battery_percent": 81}, seq=1, reported_at=now, received_at=now
    )
    body = logged_in(viewer).get(f"/vehicles/{vehicle.vin}/").content.decode()
    assert "Battery percent" in body
    assert "81" in body


@pytest.mark.django_db
def test_unknown_vehicle_is_not_found(viewer) -> None:
    assert logged_in(viewer).get("/vehicles/WVWZZZ1JZ3W000000/").status_code == 404


@pytest.mark.django_db
def test_pqc_page_counts_vehicles_per_configuration(viewer, vehicle, other_vehicle) -> None:
    Vehicle.objects.update(tls_group="MLKEM768", tls_signature_algorithm="ecdsa_secp256r1_sha256")
    overview = dashboard.pqc_overview()
    default = next(row for row in overview["configurations"] if row.is_default)
    assert (default.vehicles, default.percent) == (2, 100.0)
    assert overview["never_connected"] == 0
    assert "ML-KEM-768 + ECDSA-P256" in logged_in(viewer).get("/pqc/").content.decode()


@pytest.fixture
def fleet_pki(settings, tmp_path):
    from pqc.pki import FleetPki

    settings.PKI_DIR = tmp_path / "pki"
    pki = FleetPki(settings.PKI_DIR)
    pki.init(families=["ecdsa-p256"], hostnames=["localhost"])
    return pki


@pytest.mark.django_db
def test_vehicle_page_shows_certificate_expiry(viewer, vehicle, fleet_pki) -> None:
    issued = fleet_pki.issue_vehicle(vehicle.vin, days=400)
    Vehicle.objects.filter(pk=vehicle.pk).update(certificate_serial=issued.serial)
    body = logged_in(viewer).get(f"/vehicles/{vehicle.vin}/").content.decode()
    assert issued.serial in body
    assert f"{issued.cert.not_valid_after_utc:%Y-%m-%d}" in body


@pytest.mark.django_db
def test_certificate_expiring_soon_raises_an_alert(viewer, vehicle, fleet_pki) -> None:
    fleet_pki.issue_vehicle(vehicle.vin, days=5)
    fleet_pki.issue_vehicle("1HGCM82633A004352", days=300)
    alerts = dashboard.fleet_alerts()
    assert [(a.level, a.detail) for a in alerts] == [("critical", vehicle.vin)]
    assert "vehicle certificate expires in 4 days" in logged_in(viewer).get("/").content.decode()


@pytest.mark.django_db
def test_campaign_page_queries_do_not_grow_with_vehicles(
    viewer, vehicle, other_vehicle, django_assert_num_queries
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    campaign = make_campaign()
    make_update(campaign, vehicle, state="installing")
    client = logged_in(viewer)
    with CaptureQueriesContext(connection) as one:
        client.get(f"/campaigns/{campaign.pk}/")
    make_update(campaign, other_vehicle, state="failed")
    with django_assert_num_queries(len(one)):
        client.get(f"/campaigns/{campaign.pk}/")


@pytest.mark.django_db
def test_vehicle_page_queries_do_not_grow_with_updates(
    viewer, vehicle, django_assert_num_queries
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_update(make_campaign(name="a"), vehicle, state="succeeded")
    client = logged_in(viewer)
    with CaptureQueriesContext(connection) as one:
        client.get(f"/vehicles/{vehicle.vin}/")
    make_update(make_campaign(name="b"), vehicle, state="failed")
    with django_assert_num_queries(len(one)):
        client.get(f"/vehicles/{vehicle.vin}/")


def write_handshake_record(base, rows) -> None:
    (base / "bench" / "results").mkdir(parents=True)
    record = {"command": "python bench/tls_handshake.py", "date": "2026-11-26T14:04Z"}
    (base / "bench" / "results" / "tls.json").write_text(
        json.dumps(record | {"configurations": rows})
    )


def handshake_row(config_id: int, p50_ms: float) -> dict:
    return {
        "id": config_id,
        "configuration": f"configuration {config_id}",
        "server_cpu_ms": 1.12,
        "handshakes_per_second_per_core": 890,
        "vs_classical": 0.94,
        "p50_ms": p50_ms,
        "bytes_client_to_server": 2137,
        "bytes_server_to_client": 2275,
    }


def test_handshake_figures_come_from_the_benchmark_record(settings, tmp_path) -> None:
    write_handshake_record(tmp_path, [handshake_row(1, 7.25), handshake_row(4, 14.5)])
    settings.BASE_DIR = tmp_path
    record = dashboard.recorded_handshakes()
    assert record["source"] == "bench/results/tls.json"
    assert [(row["id"], row["bytes"], row["bar"]) for row in record["rows"]] == [
        (1, 4412, 50.0),
        (4, 4412, 100.0),
    ]


def test_a_missing_or_broken_record_shows_no_figures(settings, tmp_path) -> None:
    settings.BASE_DIR = tmp_path
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "BENCHMARKS.md").write_text("| id | p50 ms |\n|---|---|\n| 1 | 2.0 |\n")
    assert dashboard.recorded_handshakes() == {}
    write_handshake_record(tmp_path, [{"id": 1}])
    assert dashboard.recorded_handshakes() == {}


@pytest.mark.django_db
def test_pqc_page_shows_handshake_figures_per_configuration(viewer, settings, tmp_path) -> None:
    write_handshake_record(tmp_path, [handshake_row(1, 7.25)])
    settings.BASE_DIR = tmp_path
    body = logged_in(viewer).get("/pqc/").content.decode()
    assert "<strong>7.25 ms</strong>" in body
    assert "bench/results/tls.json" in body
    assert "<td>configuration 1</td>" in body


@pytest.mark.django_db
def test_campaign_page_shows_who_did_what(fleet_operator, viewer, vehicle) -> None:
    from ota.models import Campaign

    firmware = make_firmware("ECM", "9.0.0")
    logged_in(fleet_operator).post("/campaigns/new", {"name": "ECM 9", "firmware": [firmware.pk]})
    campaign = Campaign.objects.get()
    logged_in(fleet_operator).post(f"/campaigns/{campaign.pk}/start")
    body = logged_in(viewer).get(f"/campaigns/{campaign.pk}/").content.decode()
    assert '<strong>campaign.started</strong> <span class="muted">by user:olga</span>' in body
    assert "<strong>campaign.created</strong>" in body


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/campaigns/", "/vehicles/", "/diagnostics/", "/pqc/"])
def test_every_live_fragment_renders_without_the_page_shell(viewer, vehicle, path) -> None:
    response = logged_in(viewer).get(f"{path}?fragment=live")
    assert response.status_code == 200
    assert "<html" not in response.content.decode()
