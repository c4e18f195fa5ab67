"""The campaign form: thresholds, schedule, maintenance window, targeting, and a preview of the
vehicles it would target before anything is saved."""

from __future__ import annotations

import datetime

import pytest

from console.tests.dashboard_helpers import logged_in, make_firmware


@pytest.fixture
def firmware(registry):
    return make_firmware("ECM", "9.0.0")


def _form(firmware, **extra: str) -> dict:
    return {"name": "ECM 9", "firmware": [firmware.pk], "waves": "50, 100", **extra}


@pytest.mark.django_db
def test_form_sets_thresholds_schedule_window_and_targeting(
    fleet_operator, vehicle, firmware
) -> None:
    from ota.models import Campaign

    response = logged_in(fleet_operator).post(
        "/campaigns/new",
        _form(
            firmware,
            success_threshold="90",
            failure_threshold="5",
            start_at="2031-12-24 22:00",
            maintenance_window_start="22:00",
            maintenance_window_end="04:30",
            model_names="Aurora, Borealis",
            model_years="2026",
            min_current_version="1.0.0",
            max_current_version="9.0.0",
        ),
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    campaign = Campaign.objects.get()
    assert (campaign.success_threshold, campaign.failure_threshold) == (0.9, 0.05)
    assert campaign.start_at == datetime.datetime(2031, 12, 24, 22, 0, tzinfo=datetime.UTC)
    assert campaign.maintenance_window_start == datetime.time(22, 0)
    assert campaign.maintenance_window_end == datetime.time(4, 30)
    assert campaign.target_model_names == ["Aurora", "Borealis"]
    assert campaign.target_model_years == [2026]
    assert (campaign.min_current_version, campaign.max_current_version) == ("1.0.0", "9.0.0")


@pytest.mark.django_db
def test_preview_shows_how_many_and_which_vehicles_and_saves_nothing(
    fleet_operator, vehicle, other_vehicle, firmware
) -> None:
    from core.models import AuditEvent
    from ota.models import Campaign

    client = logged_in(fleet_operator)
    audited = AuditEvent.objects.count()
    response = client.post("/campaigns/new", _form(firmware, preview="1"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Would target <strong>2</strong> vehicles" in body
    assert vehicle.vin in body and other_vehicle.vin in body
    # The form comes back filled in, to create the campaign as previewed.
    assert 'value="ECM 9"' in body

    response = client.post("/campaigns/new", _form(firmware, preview="1", model_years="2025"))
    body = response.content.decode()
    assert "Would target <strong>1</strong> vehicle" in body
    assert other_vehicle.vin in body and vehicle.vin not in body
    assert not Campaign.objects.exists()
    assert AuditEvent.objects.count() == audited


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("success_threshold", "120"),
        ("start_at", "tomorrow"),
        ("maintenance_window_start", "9pm"),
        ("model_years", "twenty"),
    ],
)
def test_bad_values_are_named_and_store_nothing(
    fleet_operator, registry, firmware, field, value
) -> None:
    from ota.models import Campaign

    response = logged_in(fleet_operator).post("/campaigns/new", _form(firmware, **{field: value}))
    assert response.status_code == 400
    assert f'id="id_{field}_error"' in response.content.decode()
    assert not Campaign.objects.exists()


@pytest.mark.django_db
def test_a_window_needs_both_ends(fleet_operator, registry, firmware) -> None:
    from ota.models import Campaign

    response = logged_in(fleet_operator).post(
        "/campaigns/new", _form(firmware, maintenance_window_start="22:00")
    )
    assert response.status_code == 400
    assert 'id="id_maintenance_window_end_error"' in response.content.decode()
    assert not Campaign.objects.exists()
