"""Builders shared by the dashboard tests."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.test import Client


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_campaign(*, name: str = "ECM 2.0 rollout", status: str = "running", **extra: Any) -> Any:
    from ota.models import Campaign

    return Campaign.objects.create(name=name, status=status, wave_percentages=[100], **extra)


def make_update(campaign: Any, vehicle: Any, *, state: str, **extra: Any) -> Any:
    from ota.models import OtaUpdate

    return OtaUpdate.objects.create(campaign=campaign, vehicle=vehicle, state=state, **extra)


def make_firmware(
    code: str = "ECM", version: str = "9.0.0", hardware: tuple[str, ...] = ("2.0", "2.1")
) -> Any:
    import io

    from firmware.services import upload_firmware

    return upload_firmware(
        io.BytesIO(b"\x7fELF firmware " + version.encode()),
        ecu_type_code=code,
        version=version,
        hardware_versions=hardware,
    ).firmware
