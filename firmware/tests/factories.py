from __future__ import annotations

import io
from collections.abc import Sequence

from ecus.models import EcuType
from firmware import services
from firmware.models import Firmware


def ecu_type(code: str = "ECM") -> EcuType:
    obj, _ = EcuType.objects.get_or_create(code=code, defaults={"name": f"{code} unit"})
    return obj


def firmware(
    *,
    code: str = "ECM",
    version: str = "1.0.0",
    data: bytes | None = None,
    hardware_versions: Sequence[str] = ("2.0",),
) -> Firmware:
    """A stored release, made through the upload service like a real one."""
    ecu_type(code)
    payload = data if data is not None else f"{code}-{version}-".encode() * 500
    result = services.upload_firmware(
        io.BytesIO(payload),
        ecu_type_code=code,
        version=version,
        original_filename=f"{code}-{version}.bin",
        size=len(payload),
        hardware_versions=hardware_versions,
    )
    return result.firmware


def item(
    ecu_id: str, target: Firmware, current: str = "", hardware: str = "2.0"
) -> services.PackageItem:
    return services.PackageItem(
        ecu_id=ecu_id, firmware=target, current_version=current, hardware_version=hardware
    )
