"""Firmware workflows: upload, deprecation, signing keys and content-addressed zone packages."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from core.api import ConflictError, DomainError
from core.audit import record_event
from ecus.models import Ecu, EcuType, RegistryEcu
from ecus.versions import InvalidVersion, SemVer
from firmware import otap, signing
from firmware.choices import FirmwareStatus, SigningKeyStatus
from firmware.deltas import DeltaAlgorithm
from firmware.models import Firmware, FirmwareCompatibility, SigningKey, ZonePackage
from firmware.storage import TooLargeError, local_path, save_local_file, save_streaming

logger = logging.getLogger(__name__)


class PayloadTooLargeError(DomainError):
    """An upload passed settings.FIRMWARE_MAX_UPLOAD_BYTES (HTTP 413)."""

    status_code = 413
    code = "too_large"


@dataclass(frozen=True)
class UploadResult:
    """A stored firmware row, plus releases that already had exactly these bytes."""

    firmware: Firmware
    same_bytes_as: tuple[Firmware, ...]


@dataclass(frozen=True)
class PackageItem:
    """One ECU of a zone update: which ECU, the target release, and what it runs now."""

    ecu_id: str
    firmware: Firmware
    current_version: str
    hardware_version: str


# ---------------------------------------------------------------------------------------------
# Upload and deprecation


def _parse_version(version: str) -> str:
    try:
        SemVer.parse(version)
    except InvalidVersion as exc:
        raise DomainError(str(exc), field="version") from None
    if not otap.VERSION_RE.match(version) or not version:
        raise DomainError("version must be 1..64 characters of [0-9A-Za-z.+-]", field="version")
    return version


def _check_hardware_versions(ecu_type: EcuType, hardware_versions: Sequence[str]) -> None:
    """Each hardware version is a version, spelled as this fleet's ECUs of the type spell it.

    Compatibility matches the text exactly: "2.0.0" for ECUs reporting "2.0" would make a
    release that no ECU can ever receive. Hardware no ECU has yet is allowed (new hardware).
    """
    known = set(
        RegistryEcu.objects.filter(ecu_type=ecu_type).values_list("hardware_version", flat=True)
    ) | set(Ecu.objects.filter(ecu_type=ecu_type).values_list("hardware_version", flat=True))
    known_parsed = {}
    for text in known:
        try:
            known_parsed[text] = SemVer.coerce(text)
        except InvalidVersion:
            continue
    for hardware in hardware_versions:
        try:
            parsed = SemVer.coerce(hardware)
        except InvalidVersion as exc:
            raise DomainError(str(exc), field="hardware_versions") from None
        if hardware in known:
            continue
        same = sorted(text for text, version in known_parsed.items() if version == parsed)
        if same:
            raise DomainError(
                f"{hardware!r} is written {same[0]!r} in this fleet's {ecu_type.code} hardware",
                field="hardware_versions",
            )


def _check_upload(
    *, ecu_type_code: str, version: str, size: int | None, hardware_versions: Sequence[str] = ()
) -> EcuType:
    version = _parse_version(version)
    ecu_type = EcuType.objects.filter(code=ecu_type_code).first()
    if ecu_type is None:
        raise DomainError(f"unknown ECU type {ecu_type_code!r}", field="ecu_type")
    _check_hardware_versions(ecu_type, hardware_versions)
    limit = settings.FIRMWARE_MAX_UPLOAD_BYTES
    if size is not None and size > limit:
        raise PayloadTooLargeError(f"file is {size} bytes, the limit is {limit}", field="file")
    if size == 0:
        raise DomainError("file is empty", field="file")
    if Firmware.objects.filter(ecu_type=ecu_type, version=version).exists():
        raise ConflictError(f"{ecu_type.code} {version} already exists", field="version")
    return ecu_type


def upload_firmware(
    source: IO[bytes],
    *,
    ecu_type_code: str,
    version: str,
    original_filename: str = "",
    size: int | None = None,
    hardware_versions: Sequence[str] = (),
    release_notes: str = "",
    uploaded_by: Any = None,
) -> UploadResult:
    """Validate, stream the bytes to storage under a generated name, then record the release."""
    ecu_type = _check_upload(
        ecu_type_code=ecu_type_code,
        version=version,
        size=size,
        hardware_versions=hardware_versions,
    )
    # The user's file name is metadata only: it never becomes part of a storage path.
    name = f"firmware/{ecu_type.pk}/{uuid.uuid4().hex}.bin"
    limit = settings.FIRMWARE_MAX_UPLOAD_BYTES
    try:
        stored, sha256, stored_size = save_streaming(name, source, limit=limit)
    except TooLargeError:
        raise PayloadTooLargeError(f"file is larger than {limit} bytes", field="file") from None
    if stored_size == 0:
        default_storage.delete(stored)
        raise DomainError("file is empty", field="file")
    try:
        firmware = _record_upload(
            ecu_type=ecu_type,
            version=version,
            stored=stored,
            sha256=sha256,
            size=stored_size,
            original_filename=original_filename[:255],
            hardware_versions=hardware_versions,
            release_notes=release_notes,
            uploaded_by=uploaded_by,
        )
    except BaseException:
        # The row is the release; bytes without a row would be an orphan nobody can reach.
        default_storage.delete(stored)
        raise
    same = Firmware.objects.filter(sha256=sha256).exclude(pk=firmware.pk).select_related("ecu_type")
    return UploadResult(firmware=firmware, same_bytes_as=tuple(same))


@transaction.atomic(durable=True)
def _record_upload(
    *,
    ecu_type: EcuType,
    version: str,
    stored: str,
    sha256: str,
    size: int,
    original_filename: str,
    hardware_versions: Sequence[str],
    release_notes: str,
    uploaded_by: Any,
) -> Firmware:
    try:
        with transaction.atomic():
            firmware = Firmware.objects.create(
                ecu_type=ecu_type,
                version=version,
                file=stored,
                original_filename=original_filename,
                size=size,
                sha256=sha256,
                release_notes=release_notes,
                uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None,
            )
    except IntegrityError:
        # Lost a race with a concurrent upload of the same release.
        raise ConflictError(f"{ecu_type.code} {version} already exists", field="version") from None
    FirmwareCompatibility.objects.bulk_create(
        FirmwareCompatibility(firmware=firmware, hardware_version=hw)
        for hw in sorted(set(hardware_versions))
    )
    record_event(
        action="firmware.uploaded",
        actor=uploaded_by,
        object_type="firmware",
        object_id=firmware.pk,
        after={"ecu_type": ecu_type.code, "version": version, "sha256": sha256, "size": size},
        details={"original_filename": original_filename},
    )
    return firmware


@transaction.atomic(durable=True)
def deprecate_firmware(firmware: Firmware, *, actor: Any = None) -> Firmware:
    """Withdraw a release from new updates; its bytes and existing packages stay."""
    changed = Firmware.objects.filter(pk=firmware.pk, status=FirmwareStatus.AVAILABLE).update(
        status=FirmwareStatus.DEPRECATED
    )
    if changed:
        record_event(
            action="firmware.deprecated",
            actor=actor,
            object_type="firmware",
            object_id=firmware.pk,
            before={"status": FirmwareStatus.AVAILABLE},
            after={"status": FirmwareStatus.DEPRECATED},
        )
    firmware.refresh_from_db(fields=["status"])
    return firmware


# ---------------------------------------------------------------------------------------------
# Signing keys


def _key_dir() -> Path:
    return Path(settings.SIGNING_KEY_DIR)


def _sync_signing_keys(*, actor: Any, new_key_actions: dict[str, str] | None = None) -> None:
    """Mirror the key directory (the source of truth) into SigningKey rows, with one audit event
    per row added or whose status changed: a retired or revoked key is a change of its own."""
    new_key_actions = new_key_actions or {}
    for info in signing.list_signing_keys(_key_dir()):
        values = {
            "mldsa_key_id": info.mldsa_key_id,
            "ecdsa_key_id": info.ecdsa_key_id,
            "status": SigningKeyStatus(info.status),
            "created_at": info.created_at,
        }
        row = SigningKey.objects.select_for_update().filter(name=info.name).first()
        if row is None:
            row = SigningKey.objects.create(name=info.name, **values)
            action, before = new_key_actions.get(info.name, "signing_key.found"), {}
        elif any(getattr(row, name) != value for name, value in values.items()):
            before = {"status": row.status}
            SigningKey.objects.filter(pk=row.pk).update(**values)
            action = f"signing_key.{info.status}"
        else:
            continue
        record_event(
            action=action,
            actor=actor,
            object_type="signing_key",
            object_id=info.name,
            before=before,
            after={
                "status": info.status,
                "mldsa_key_id": info.mldsa_key_id,
                "ecdsa_key_id": info.ecdsa_key_id,
            },
        )


def generate_signing_key(*, name: str | None = None, actor: Any = None) -> SigningKey:
    """Create the first hybrid signing key pair under settings.SIGNING_KEY_DIR."""
    try:
        info = signing.generate_signing_key(_key_dir(), name=name)
    except signing.SigningError as exc:
        raise ConflictError(str(exc), field="name") from None
    return _record_key_change(info.name, "signing_key.generated", actor)


def rotate_signing_key(*, name: str | None = None, actor: Any = None) -> SigningKey:
    """Make a new active key; the previous one is retired but stays in the trust bundle."""
    try:
        info = signing.rotate_signing_key(_key_dir(), name=name)
    except signing.SigningError as exc:
        raise ConflictError(str(exc), field="name") from None
    return _record_key_change(info.name, "signing_key.rotated", actor)


@transaction.atomic
def _record_key_change(name: str, action: str, actor: Any) -> SigningKey:
    _sync_signing_keys(actor=actor, new_key_actions={name: action})
    return SigningKey.objects.get(name=name)


@transaction.atomic
def sync_signing_keys(*, actor: Any) -> list[SigningKey]:
    """Take in keys found in the key directory (a restored one), auditing each row it changes."""
    _sync_signing_keys(actor=actor)
    return list_signing_keys()


def list_signing_keys() -> list[SigningKey]:
    """All recorded signing keys, newest first; reading never changes the inventory."""
    return list(SigningKey.objects.order_by("-created_at"))


def has_active_signing_key() -> bool:
    """Whether the key directory holds an active key, recorded or not."""
    return any(k.status == signing.STATUS_ACTIVE for k in signing.list_signing_keys(_key_dir()))


def trust_bundle_path() -> Path:
    """The PEM bundle of trusted public keys that vehicles are provisioned with."""
    return _key_dir() / signing.TRUST_BUNDLE


def _active_signer() -> tuple[signing.HybridSigner, SigningKey]:
    key_dir = _key_dir()
    if not has_active_signing_key():
        # A fresh install has no key yet; the first package creates one rather than failing.
        info = signing.generate_signing_key(key_dir)
        # Recorded like a deliberate generation, so the audit trail shows where the key came from.
        _record_key_change(info.name, "signing_key.generated", "system:firmware")
    signer = signing.load_active_signer(key_dir)
    key = SigningKey.objects.filter(name=signer.name).first()
    if key is None:
        sync_signing_keys(actor="system:firmware")
        key = SigningKey.objects.get(name=signer.name)
    return signer, key


# ---------------------------------------------------------------------------------------------
# Zone packages


def _package_ttl() -> dt.timedelta:
    return dt.timedelta(seconds=getattr(settings, "OTA_PACKAGE_TTL_SECONDS", 30 * 86400))


def _refresh_margin() -> dt.timedelta:
    # Rebuild a little before expiry, so a vehicle never starts downloading a package that
    # will have expired by the time it verifies it.
    return dt.timedelta(seconds=getattr(settings, "OTA_PACKAGE_REFRESH_SECONDS", 86400))


def build_options() -> otap.BuildOptions:
    """Writer options from settings."""
    return otap.BuildOptions(
        level=settings.PACKAGE_ZSTD_LEVEL,
        threads=getattr(settings, "PACKAGE_ZSTD_THREADS", 0),
        delta_algorithm=DeltaAlgorithm.from_label(
            getattr(settings, "PACKAGE_DELTA_ALGORITHM", "zstd-patch-from")
        ),
        delta_level=getattr(settings, "PACKAGE_DELTA_LEVEL", 19),
        delta_max_bytes=getattr(settings, "PACKAGE_DELTA_MAX_BYTES", 256 << 20),
    )


def _base_firmware(item: PackageItem) -> Firmware | None:
    """The vehicle's current image, if the server has it: only then is a delta possible."""
    if not item.current_version or item.current_version == item.firmware.version:
        return None
    return Firmware.objects.filter(
        ecu_type_id=item.firmware.ecu_type_id, version=item.current_version
    ).first()


def _check_items(zonal_gateway_id: str, items: Sequence[PackageItem]) -> None:
    if not otap.GATEWAY_ID_RE.match(zonal_gateway_id):
        raise DomainError(f"bad zonal gateway id {zonal_gateway_id!r}", field="zonal_gateway_id")
    if not items:
        raise DomainError("a zone package needs at least one ECU", field="items")
    for item in items:
        if not otap.ECU_ID_RE.match(item.ecu_id):
            raise DomainError(f"bad ECU id {item.ecu_id!r}", field="items")
        if not item.firmware.is_available:
            raise DomainError(f"{item.firmware} is deprecated", field="items")
        allowed = {c.hardware_version for c in item.firmware.compatibilities.all()}
        if allowed and item.hardware_version not in allowed:
            raise DomainError(
                f"{item.firmware} does not run on hardware {item.hardware_version!r}",
                field="items",
            )


def zone_content(
    zonal_gateway_id: str, items: Sequence[PackageItem], options: otap.BuildOptions
) -> tuple[str, dict[str, Any], dict[str, Firmware | None]]:
    """Canonical description of what goes into a zone package, and its content address."""
    bases = {item.ecu_id: _base_firmware(item) for item in items}
    entries = []
    for item in sorted(items, key=lambda i: i.ecu_id):
        base = bases[item.ecu_id]
        entries.append(
            {
                "ecu_id": item.ecu_id,
                "from": item.current_version,
                "to": item.firmware.version,
                "image_sha256": item.firmware.sha256,
                "base_sha256": base.sha256 if base else None,
            }
        )
    content = {
        "format": otap.FORMAT_VERSION,
        "zonal_gateway_id": zonal_gateway_id,
        "entries": entries,
        "options": {
            "level": options.level,
            "delta": options.delta_algorithm.label,
            "delta_level": options.delta_level,
        },
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest(), content, bases


def _next_package_version() -> int:
    # Milliseconds since the epoch, bumped past the newest existing package: monotonic across
    # restarts and database resets alike, which the vehicles' anti-rollback check relies on.
    latest = ZonePackage.objects.aggregate(latest=Max("package_version"))["latest"] or 0
    return max(int(time.time() * 1000), latest + 1)


@contextmanager
def _sources(
    items: Sequence[PackageItem], bases: dict[str, Firmware | None]
) -> Iterator[list[otap.EntrySource]]:
    with ExitStack() as stack:
        sources = []
        for item in sorted(items, key=lambda i: i.ecu_id):
            base = bases[item.ecu_id]
            sources.append(
                otap.EntrySource(
                    ecu_id=item.ecu_id,
                    current_version=item.current_version,
                    target_version=item.firmware.version,
                    image_path=stack.enter_context(local_path(item.firmware.file.name)),
                    base_path=stack.enter_context(local_path(base.file.name)) if base else None,
                )
            )
        yield sources


def _build_file(
    package_id: str,
    zonal_gateway_id: str,
    items: Sequence[PackageItem],
    bases: dict[str, Firmware | None],
    options: otap.BuildOptions,
) -> tuple[otap.BuildResult, str, SigningKey, dt.datetime]:
    """Write and sign the package to a temp file, then hand it to storage; slow, no transaction."""
    signer, key_row = _active_signer()
    expires_at = timezone.now() + _package_ttl()
    scratch = Path(settings.PACKAGE_DIR)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=scratch, prefix=".build-", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        with _sources(items, bases) as sources, tmp_path.open("w+b") as out:
            result = otap.write_package(
                out,
                zonal_gateway_id=zonal_gateway_id,
                sources=sources,
                signer=signer,
                package_version=_next_package_version(),
                expires_at=expires_at,
                options=options,
            )
        stored = save_local_file(f"packages/{package_id}-{result.sha256[:16]}.otap", tmp_path)
    except otap.OtapError as exc:
        raise DomainError(f"package build failed: {exc}", field="items") from None
    finally:
        tmp_path.unlink(missing_ok=True)
    return result, stored, key_row, expires_at


def get_or_build_zone_package(
    *, vehicle: Any, zonal_gateway_id: str, items: list[PackageItem]
) -> ZonePackage:
    """The signed package for this zone content, built once and shared; vehicle may fetch it."""
    _check_items(zonal_gateway_id, items)
    options = build_options()
    package_id, content, bases = zone_content(zonal_gateway_id, items, options)
    fresh_until = timezone.now() + _refresh_margin()
    existing = ZonePackage.objects.filter(pk=package_id, expires_at__gt=fresh_until).first()
    if existing is None:
        built = _build_file(package_id, zonal_gateway_id, items, bases, options)
        try:
            existing = _store_package(
                package_id, content, zonal_gateway_id, items, built, fresh_until
            )
        except BaseException:
            # Without its row the file is unreachable; do not leave it behind.
            default_storage.delete(built[1])
            raise
    existing.vehicles.add(vehicle)
    return existing


@transaction.atomic
def _store_package(
    package_id: str,
    content: dict[str, Any],
    zonal_gateway_id: str,
    items: Sequence[PackageItem],
    built: tuple[otap.BuildResult, str, SigningKey, dt.datetime],
    fresh_until: dt.datetime,
) -> ZonePackage:
    result, stored, key_row, _ = built
    current = ZonePackage.objects.select_for_update().filter(pk=package_id).first()
    if current is not None and current.expires_at > fresh_until:
        # Another request built the same content meanwhile: keep theirs, drop ours.
        transaction.on_commit(lambda: default_storage.delete(stored))
        return current
    old_file = current.file.name if current is not None else None
    fields = {
        "zonal_gateway_id": zonal_gateway_id,
        "content": content,
        "file": stored,
        "sha256": result.sha256,
        "size": result.size,
        "package_version": result.package.package_version,
        "expires_at": result.package.expires_at,
        "built_at": timezone.now(),
        "signing_key": key_row,
    }
    if current is None:
        try:
            # A savepoint, so a concurrent insert of the same content fails alone, not the outer
            # transaction; the row lock above cannot cover a row that does not exist yet.
            with transaction.atomic():
                package = ZonePackage.objects.create(pk=package_id, **fields)
        except IntegrityError:
            # Another process stored this content first; plans already name its hash, so it
            # wins and ours is dropped instead of overwriting it.
            transaction.on_commit(lambda: default_storage.delete(stored))
            return ZonePackage.objects.select_for_update().get(pk=package_id)
    else:
        for name, value in fields.items():
            setattr(current, name, value)
        current.save(update_fields=list(fields))
        package = current
    package.firmware.set([item.firmware for item in items])
    record_event(
        action="zone_package.built",
        actor="system:firmware",
        object_type="zone_package",
        object_id=package.pk,
        after={
            "package_version": package.package_version,
            "sha256": package.sha256,
            "size": package.size,
            "signing_key": key_row.name,
        },
        details={"zonal_gateway_id": zonal_gateway_id},
    )
    if old_file and old_file != stored:
        transaction.on_commit(lambda: default_storage.delete(old_file))
    return package
