from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from core.api import ConflictError, DomainError
from core.models import AuditEvent
from firmware import otap, services, signing
from firmware.choices import FirmwareStatus
from firmware.deltas import DeltaAlgorithm
from firmware.models import Firmware, ImmutableFirmwareError, SigningKey, ZonePackage
from firmware.tests import factories

pytestmark = pytest.mark.django_db


def _stored_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _verify(package: ZonePackage, out: Path, base_dir: Path | None = None) -> dict[str, bytes]:
    trust = signing.load_trust_set(services.trust_bundle_path())
    with default_storage.open(package.file.name, "rb") as fh:
        paths = otap.extract_package(fh, out, trust=trust, base_dir=base_dir)
    return {ecu: path.read_bytes() for ecu, path in paths.items()}


def test_upload_stores_bytes_under_a_generated_name_with_their_hash() -> None:
    factories.ecu_type("ECM")
    data = b"\x7fELF" + bytes(range(256)) * 100
    result = services.upload_firmware(
        io.BytesIO(data),
        ecu_type_code="ECM",
        version="1.2.3",
        original_filename="../../etc/passwd",
        size=len(data),
        hardware_versions=["2.0", "2.1"],
    )
    fw = result.firmware
    assert fw.sha256 == __import__("hashlib").sha256(data).hexdigest()
    assert fw.size == len(data)
    assert fw.original_filename == "../../etc/passwd"
    assert "passwd" not in fw.file.name and ".." not in fw.file.name
    assert fw.file.name.startswith("firmware/")
    assert default_storage.open(fw.file.name).read() == data
    assert sorted(c.hardware_version for c in fw.compatibilities.all()) == ["2.0", "2.1"]
    assert result.same_bytes_as == ()
    event = AuditEvent.objects.get(action="firmware.uploaded", object_id=str(fw.pk))
    assert event.after["sha256"] == fw.sha256


def test_same_bytes_under_another_version_are_reported() -> None:
    first = factories.firmware(version="1.0.0", data=b"same image" * 100)
    second = services.upload_firmware(
        io.BytesIO(b"same image" * 100), ecu_type_code="ECM", version="1.0.1", size=1000
    )
    assert second.same_bytes_as == (first,)


@pytest.mark.parametrize(
    ("kwargs", "field", "error"),
    [
        ({"version": "1.0"}, "version", DomainError),
        ({"version": "v1.0.0"}, "version", DomainError),
        ({"ecu_type_code": "NOPE"}, "ecu_type", DomainError),
        ({"version": "1.0.0"}, "version", ConflictError),
    ],
)
def test_bad_upload_is_refused_naming_the_field_and_stores_nothing(
    kwargs: dict[str, str], field: str, error: type[Exception]
) -> None:
    factories.firmware(version="1.0.0")
    before_rows, before_files = Firmware.objects.count(), _stored_files()
    before_events = AuditEvent.objects.count()
    arguments = {"ecu_type_code": "ECM", "version": "2.0.0", "size": 3, **kwargs}
    with pytest.raises(error) as excinfo:
        services.upload_firmware(io.BytesIO(b"abc"), **arguments)
    assert excinfo.value.field == field
    assert Firmware.objects.count() == before_rows
    assert _stored_files() == before_files
    assert AuditEvent.objects.count() == before_events


def test_oversized_stream_is_refused_and_the_partial_file_removed(settings) -> None:
    settings.FIRMWARE_MAX_UPLOAD_BYTES = 1000
    factories.ecu_type()
    before = _stored_files()
    # size=None: the service must notice while streaming, not trust a declared size.
    with pytest.raises(services.PayloadTooLargeError) as excinfo:
        services.upload_firmware(io.BytesIO(b"x" * 5000), ecu_type_code="ECM", version="1.0.0")
    assert excinfo.value.field == "file"
    assert _stored_files() == before
    assert not Firmware.objects.exists()


def test_released_firmware_cannot_be_changed_or_deleted() -> None:
    fw = factories.firmware()
    stored = Firmware.objects.get(pk=fw.pk)
    stored.version = "9.9.9"
    with pytest.raises(ImmutableFirmwareError, match="version"):
        stored.save()
    with pytest.raises(ImmutableFirmwareError):
        stored.delete()
    stored = Firmware.objects.get(pk=fw.pk)
    stored.release_notes = "notes may change"
    stored.save()
    assert Firmware.objects.get(pk=fw.pk).version == "1.0.0"


def test_deprecation_keeps_the_release_and_its_bytes(fleet_engineer) -> None:
    fw = factories.firmware()
    services.deprecate_firmware(fw, actor=fleet_engineer)
    services.deprecate_firmware(fw, actor=fleet_engineer)  # a second call changes nothing
    fw.refresh_from_db()
    assert fw.status == FirmwareStatus.DEPRECATED
    assert default_storage.exists(fw.file.name)
    events = AuditEvent.objects.filter(action="firmware.deprecated", object_id=str(fw.pk))
    assert [e.actor_label for e in events] == ["user:erin"]


def test_two_vehicles_needing_the_same_zone_content_share_one_package(
    vehicle, other_vehicle, tmp_path: Path
) -> None:
    ecm = factories.firmware(code="ECM", version="2.0.0")
    tcu = factories.firmware(code="TCU", version="3.1.0")
    items = [factories.item("ECU_011", ecm, "1.0.0"), factories.item("ECU_012", tcu, "3.0.0")]
    first = services.get_or_build_zone_package(
        vehicle=vehicle, zonal_gateway_id="ZGW_FRONT", items=items
    )
    second = services.get_or_build_zone_package(
        vehicle=other_vehicle, zonal_gateway_id="ZGW_FRONT", items=list(reversed(items))
    )
    assert first.pk == second.pk
    assert ZonePackage.objects.count() == 1
    assert set(second.vehicles.all()) == {vehicle, other_vehicle}
    images = _verify(second, tmp_path)
    assert images == {
        "ECU_011": ecm.file.open("rb").read(),
        "ECU_012": tcu.file.open("rb").read(),
    }
    assert SigningKey.objects.filter(status="active").count() == 1
    assert AuditEvent.objects.filter(action="zone_package.built").count() == 1
    assert AuditEvent.objects.filter(action="signing_key.generated").count() == 1


def test_different_zone_content_gets_its_own_package(vehicle) -> None:
    ecm = factories.firmware(code="ECM", version="2.0.0")
    a = services.get_or_build_zone_package(
        vehicle=vehicle,
        zonal_gateway_id="ZGW_FRONT",
        items=[factories.item("ECU_011", ecm, "1.0.0")],
    )
    b = services.get_or_build_zone_package(
        vehicle=vehicle,
        zonal_gateway_id="ZGW_FRONT",
        items=[factories.item("ECU_011", ecm, "1.5.0")],
    )
    assert a.pk != b.pk
    assert b.package_version > a.package_version


def test_delta_is_used_only_when_the_current_image_is_known(vehicle, tmp_path: Path) -> None:
    base = bytes(range(256)) * 2000
    target = base[:1000] + b"fix" + base[1000:]
    old = factories.firmware(version="1.0.0", data=base)
    new = factories.firmware(version="1.1.0", data=target)
    package = services.get_or_build_zone_package(
        vehicle=vehicle,
        zonal_gateway_id="ZGW_FRONT",
        items=[factories.item("ECU_011", new, "1.0.0")],
    )
    with default_storage.open(package.file.name, "rb") as fh:
        entry = otap.parse_package(fh).entries[0]
    assert entry.delta_algorithm == DeltaAlgorithm.ZSTD_PATCH_FROM
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "ECU_011.bin").write_bytes(old.file.open("rb").read())
    assert _verify(package, tmp_path / "out", base_dir=tmp_path / "current") == {"ECU_011": target}
    unknown = services.get_or_build_zone_package(
        vehicle=vehicle,
        zonal_gateway_id="ZGW_FRONT",
        items=[factories.item("ECU_011", new, "0.9.0")],
    )
    with default_storage.open(unknown.file.name, "rb") as fh:
        assert not otap.parse_package(fh).entries[0].is_delta


def test_expired_package_is_rebuilt_with_a_newer_version(
    vehicle, django_capture_on_commit_callbacks
) -> None:
    ecm = factories.firmware(code="ECM", version="2.0.0")
    items = [factories.item("ECU_011", ecm, "1.0.0")]
    old = services.get_or_build_zone_package(
        vehicle=vehicle, zonal_gateway_id="ZGW_FRONT", items=items
    )
    old_file = old.file.name
    ZonePackage.objects.filter(pk=old.pk).update(expires_at=timezone.now() - dt.timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        new = services.get_or_build_zone_package(
            vehicle=vehicle, zonal_gateway_id="ZGW_FRONT", items=items
        )
    assert new.pk == old.pk
    assert new.package_version > old.package_version
    assert new.expires_at > timezone.now() + dt.timedelta(days=1)
    assert new.file.name != old_file
    assert not default_storage.exists(old_file)
    assert default_storage.exists(new.file.name)


def test_deprecated_or_incompatible_firmware_is_not_packaged(vehicle) -> None:
    ecm = factories.firmware(code="ECM", version="2.0.0", hardware_versions=["2.0"])
    with pytest.raises(DomainError, match="does not run on hardware"):
        services.get_or_build_zone_package(
            vehicle=vehicle,
            zonal_gateway_id="ZGW_FRONT",
            items=[factories.item("ECU_011", ecm, "1.0.0", hardware="9.9")],
        )
    services.deprecate_firmware(ecm)
    ecm.refresh_from_db()
    with pytest.raises(DomainError, match="deprecated"):
        services.get_or_build_zone_package(
            vehicle=vehicle, zonal_gateway_id="ZGW_FRONT", items=[factories.item("ECU_011", ecm)]
        )
    assert not ZonePackage.objects.exists()
