"""GET /api/v1/vehicles: filters, keyset pages with the total, sorting, and refused input."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from ecus.models import Ecu
from vehicles.choices import VehicleStatus
from vehicles.models import Vehicle
from vehicles.services import register_vehicle

# VIN, model, year: registered in this order, so primary keys do not follow the VIN order.
FLEET = [
    ("WVWZZZ1JZ3W386752", "Aurora", 2026),
    ("1HGCM82633A004352", "Aurora", 2025),
    ("5YJ3E1EA7KF317009", "Borealis", 2024),
    ("JH4KA7561PC008269", "Borealis", 2026),
    ("2T1BURHE0JC043821", "Aurora", 2024),
    ("3VWFE21C04M000001", "Cirrus", 2023),
    ("4T1BF1FK5CU500001", "Cirrus", 2026),
]


def _set_version(vin: str, ecu_id: str, version: str) -> None:
    ecu = Ecu.objects.get(vehicle__vin=vin, ecu_id=ecu_id)
    ecu.sw_version = version
    ecu.save(update_fields=["sw_version"])


def _set_type_version(vin: str, code: str, version: str) -> None:
    for ecu in Ecu.objects.filter(vehicle__vin=vin, ecu_type__code=code):
        _set_version(vin, ecu.ecu_id, version)


@pytest.fixture
def fleet(registry):
    vehicles = [register_vehicle(vin=v, model_name=m, model_year=y) for v, m, y in FLEET]
    _set_type_version("WVWZZZ1JZ3W386752", "ECM", "2.1.0")
    _set_version("1HGCM82633A004352", "ECU_001", "1.9.9")
    _set_version("5YJ3E1EA7KF317009", "ECU_001", "2.0.0")
    Vehicle.objects.filter(vin="5YJ3E1EA7KF317009").update(
        is_online=True,
        status=VehicleStatus.ACTIVE,
        tls_group="X25519MLKEM768",
        tls_signature_algorithm="ML-DSA-65",
        certificate_not_after=timezone.now() + datetime.timedelta(days=10),
    )
    Vehicle.objects.filter(vin="JH4KA7561PC008269").update(
        certificate_not_after=timezone.now() + datetime.timedelta(days=400)
    )
    return vehicles


def _vins(client, query: str = "") -> list[str]:
    response = client.get(f"/api/v1/vehicles?{query}")
    assert response.status_code == 200, response.content[:300]
    return [row["vin"] for row in response.json()["results"]]


def _refused(client, query: str) -> dict:
    response = client.get(f"/api/v1/vehicles?{query}")
    assert response.status_code == 400, response.content[:300]
    return response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=active", {"5YJ3E1EA7KF317009"}),
        ("online=true", {"5YJ3E1EA7KF317009"}),
        ("model_name=Cirrus", {"3VWFE21C04M000001", "4T1BF1FK5CU500001"}),
        (
            "model_year_min=2025&model_year_max=2026&model_name=Aurora",
            {
                "WVWZZZ1JZ3W386752",
                "1HGCM82633A004352",
            },
        ),
        ("ecu=ECM&version=>=2.0.0", {"WVWZZZ1JZ3W386752", "5YJ3E1EA7KF317009"}),
        ("version=ECM>=2.0.0,<2.1.0", {"5YJ3E1EA7KF317009"}),
        ("version=ECM=2.1.0", {"WVWZZZ1JZ3W386752"}),
        ("ecu=ECM&version=<2.0.0&model_name=Aurora", {"1HGCM82633A004352", "2T1BURHE0JC043821"}),
        ("group=X25519MLKEM768&signature=ML-DSA-65", {"5YJ3E1EA7KF317009"}),
        ("certificate_expires_within_days=30", {"5YJ3E1EA7KF317009"}),
        (
            "certificate_expires_after=2026-01-01T00:00:00Z",
            {
                "5YJ3E1EA7KF317009",
                "JH4KA7561PC008269",
            },
        ),
        ("search=borealis", {"5YJ3E1EA7KF317009", "JH4KA7561PC008269"}),
    ],
)
def test_filters_narrow_the_fleet(viewer_client, fleet, query, expected) -> None:
    assert set(_vins(viewer_client, query)) == expected


def test_version_range_and_zone_must_hold_for_the_same_ecu(viewer_client, fleet) -> None:
    zone = Ecu.objects.get(vehicle__vin="WVWZZZ1JZ3W386752", ecu_id="ECU_001").zonal_gateway
    assert _vins(viewer_client, f"version=ECM=2.1.0&zone={zone.gateway_id}") == [
        "WVWZZZ1JZ3W386752"
    ]
    other_zone = zone.vehicle.zonal_gateways.exclude(pk=zone.pk).first()
    assert _vins(viewer_client, f"version=ECM=2.1.0&zone={other_zone.gateway_id}") == []


def test_firmware_filter_finds_vehicles_running_the_release(viewer_client, fleet) -> None:
    from firmware.tests.factories import firmware

    release = firmware(code="ECM", version="2.1.0")
    assert _vins(viewer_client, f"firmware={release.pk}") == ["WVWZZZ1JZ3W386752"]


def test_campaign_filter_lists_the_campaigns_vehicles(viewer_client, fleet, fleet_operator) -> None:
    from ota.tests.conftest import launch_campaign, make_release

    campaign = launch_campaign(
        fleet_operator,
        [make_release("ECM", "3.0.0", hardware=("2.0",))],
        target_vins=["3VWFE21C04M000001"],
    )
    assert _vins(viewer_client, f"campaign={campaign.pk}") == ["3VWFE21C04M000001"]


def test_pages_forward_and_back_cover_the_fleet_once_with_the_total(viewer_client, fleet) -> None:
    seen, url, pages = [], "/api/v1/vehicles?limit=3&ordering=-model_year", []
    while url:
        body = viewer_client.get(url).json()
        assert body["count"] == len(FLEET)
        pages.append([row["vin"] for row in body["results"]])
        seen += pages[-1]
        url = body["next"]
    assert len(seen) == len(FLEET) == len(set(seen))
    years = [dict((v, y) for v, _, y in FLEET)[vin] for vin in seen]
    assert years == sorted(years, reverse=True)
    assert [len(page) for page in pages] == [3, 3, 1]
    previous = viewer_client.get(url or body["previous"]).json()
    assert [row["vin"] for row in previous["results"]] == pages[1]
    first = viewer_client.get(previous["previous"]).json()
    assert [row["vin"] for row in first["results"]] == pages[0]
    assert first["previous"] is None


def test_default_order_is_by_vin(viewer_client, fleet) -> None:
    assert _vins(viewer_client) == sorted(v for v, _, _ in FLEET)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("stauts=active", "stauts"),
        ("offset=10", "offset"),
        ("version=<2.0", "version"),
        ("version=ECM<<2.0.0", "version"),
        ("version=ECM", "version"),
        ("version=ECM2.1.0", "version"),
        ("ecu=NOPE", "ecu"),
        ("ecu=TCM&version=ECM<2.0.0", "version"),
        ("online=maybe", "online"),
        ("model_year_min=1492", "model_year_min"),
        ("firmware=99999999999999999999", "firmware"),
        ("campaign=abc", "campaign"),
        ("certificate_expires_before=tomorrow", "certificate_expires_before"),
        ("ordering=vmg_id", "ordering"),
        ("cursor=not-a-cursor", "cursor"),
        ("limit=0", "limit"),
    ],
)
def test_unknown_or_malformed_parameters_are_refused_by_name(
    viewer_client, fleet, query, field
) -> None:
    assert field in _refused(viewer_client, query)


def test_a_cursor_made_for_another_ordering_is_refused(viewer_client, fleet) -> None:
    next_url = viewer_client.get("/api/v1/vehicles?limit=2&ordering=model_name").json()["next"]
    cursor = next_url.split("cursor=")[1].split("&")[0]
    assert "cursor" in _refused(viewer_client, f"limit=2&ordering=vin&cursor={cursor}")


def test_queries_per_page_do_not_grow_with_the_fleet(
    viewer_client, fleet, django_assert_max_num_queries
) -> None:
    query = "/api/v1/vehicles?ecu=ECM&version=<3.0.0&campaign=1&certificate_expires_within_days=9"
    # 7 on PostgreSQL: the capped count of an ECU filter turns parallel workers off first.
    with django_assert_max_num_queries(7) as few:
        viewer_client.get(query)
    for n in range(6):
        register_vehicle(vin=f"1HGCM8263{n:08d}", model_name="Aurora", model_year=2026)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert viewer_client.get("/api/v1/vehicles?ecu=ECM&version=<3.0.0").status_code == 200


@pytest.mark.parametrize(
    "instant",
    ["0518-05-05T11:15:38.689+23:36", "2030-01-01T00:00:00-23:59", "9999-12-31T12:00:00+00:00"],
)
def test_any_instant_python_reads_filters_even_with_offsets_the_database_lacks(
    viewer_client, fleet, instant
) -> None:
    # PostgreSQL keeps offsets of at most 15:59: the filter hands it UTC instead.
    response = viewer_client.get("/api/v1/vehicles", {"certificate_expires_after": instant})
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-02:00"])
def test_an_instant_before_year_1_or_after_9999_in_utc_is_refused_by_name(
    viewer_client, fleet, instant
) -> None:
    assert "certificate_expires_before" in _refused(
        viewer_client, f"certificate_expires_before={instant.replace('+', '%2B')}"
    )
