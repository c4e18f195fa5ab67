from __future__ import annotations

from django.core.files.base import ContentFile

from ecus.models import EcuType
from firmware.choices import FirmwareStatus
from firmware.models import Firmware, FirmwareCompatibility


def _firmware(ecu_type: EcuType, version: str, *hardware: str, status=FirmwareStatus.AVAILABLE):
    firmware = Firmware(ecu_type=ecu_type, version=version, size=1, sha256="0" * 64, status=status)
    firmware.file.save(f"fw-{version}.bin", ContentFile(b"x"), save=False)
    firmware.save()
    for hw in hardware:
        FirmwareCompatibility.objects.create(firmware=firmware, hardware_version=hw)
    return firmware


def test_newest_compatible_available_firmware_in_one_query(
    registry, django_assert_num_queries
) -> None:
    ecm = EcuType.objects.get(code="ECM")
    _firmware(ecm, "1.9.0", "2.0")
    _firmware(ecm, "1.10.0-rc.1", "2.0")
    expected = _firmware(ecm, "1.10.0", "2.0", "2.1")
    _firmware(ecm, "2.0.0", "2.1")  # newer but not for hardware 2.0
    _firmware(ecm, "1.11.0", "2.0", status=FirmwareStatus.DEPRECATED)
    with django_assert_num_queries(1):
        newest = Firmware.objects.newest_for(ecu_type_id=ecm.pk, hardware_version="2.0")
    assert newest == expected
