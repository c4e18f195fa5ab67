"""Fixtures of the OTA tests: firmware releases, a stand-in package builder, campaign helpers."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from core.mqtt.testing import RecordingPublisher, recording_publisher
from ecus.models import EcuType
from firmware import services as firmware_services
from firmware.models import Firmware, FirmwareDependency


@pytest.fixture(autouse=True)
def published() -> Iterator[RecordingPublisher]:
    """What the OTA workflows publish over MQTT (desired states), recorded instead of sent."""
    with recording_publisher() as recorder:
        yield recorder


def make_release(
    code: str,
    version: str,
    *,
    hardware: Sequence[str] = ("2.0",),
    requires: dict[str, str] | None = None,
) -> Firmware:
    """A released firmware image, stored through the firmware upload service."""
    EcuType.objects.get_or_create(code=code, defaults={"name": code})
    payload = f"{code}-{version}-".encode() * 64
    release = firmware_services.upload_firmware(
        io.BytesIO(payload),
        ecu_type_code=code,
        version=version,
        size=len(payload),
        hardware_versions=hardware,
    ).firmware
    for required_code, min_version in (requires or {}).items():
        FirmwareDependency.objects.create(
            firmware=release,
            required_ecu_type=EcuType.objects.get(code=required_code),
            min_version=min_version,
        )
    return release


@dataclass
class FakePackage:
    pk: str
    size: int
    sha256: str
    expires_at: Any


class FakePackageBuilder:
    """Stands in for the firmware app's package builder where the bytes do not matter."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str]]] = []

    def __call__(self, *, vehicle: Any, zonal_gateway_id: str, items: list[Any]) -> FakePackage:
        ecu_ids = [item.ecu_id for item in items]
        self.calls.append((vehicle.vin, zonal_gateway_id, ecu_ids))
        return FakePackage(
            pk=f"pkg-{zonal_gateway_id}-{'-'.join(ecu_ids)}",
            size=1000 * len(items),
            sha256="ab" * 32,
            expires_at=timezone.now() + timedelta(days=30),
        )


@pytest.fixture
def fake_packages(monkeypatch) -> FakePackageBuilder:
    builder = FakePackageBuilder()
    monkeypatch.setattr("ota.services.zone_package_builder", lambda: builder)
    return builder


@pytest.fixture
def ecm_release(registry) -> Firmware:
    """ECM 2.0.0 for hardware 2.0: the vehicle's ECU_001 (1.1.1) and ECU_017 (1.1.3) need it."""
    return make_release("ECM", "2.0.0", hardware=("2.0",))


def launch_campaign(operator: Any, releases: Sequence[Firmware], **fields: Any) -> Any:
    """A campaign created, started and fanned out by one worker tick (one wave unless told)."""
    from ota.campaigns import create_campaign, start_campaign
    from ota.engine import run_tick

    fields.setdefault("wave_percentages", [100])
    fields.setdefault("name", "test rollout")
    campaign = create_campaign(operator=operator, firmware_ids=[r.pk for r in releases], **fields)
    start_campaign(campaign, operator=operator)
    run_tick()
    campaign.refresh_from_db()
    return campaign


@pytest.fixture
def offered_update(vehicle, fleet_operator, ecm_release, fake_packages) -> Any:
    """The vehicle's ECM update, offered by a running one-wave campaign."""
    from ota.models import OtaUpdate

    launch_campaign(fleet_operator, [ecm_release])
    return OtaUpdate.objects.get(vehicle=vehicle)


def serve_packages(update: Any) -> None:
    """Record every package of the update's plan as served in full, as the download view does."""
    from ota.downloads import record_package_served

    update.refresh_from_db()
    for package in update.plan.get("packages", []):
        record_package_served(
            vehicle_id=update.vehicle_id,
            package_id=package["package_id"],
            first=0,
            count=package["size"],
        )
    update.refresh_from_db()
