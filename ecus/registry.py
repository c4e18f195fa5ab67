"""Parsing and validation of the ECU registry file, before anything touches the database."""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from ecus.choices import UpdatePriority
from ecus.versions import InvalidVersion, SemVer

ECU_ID_PATTERN = re.compile(r"^ECU_\d{3}$")
GATEWAY_ID_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
TYPE_CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,15}$")
# The registry file format this server reads (`version:` at the top of the file).
FORMAT_VERSION = 1
DOCUMENT_KEYS = ("version", "ecu_types", "zones", "ecus")
ECU_TYPE_FIELDS = ("code", "name")
ZONE_FIELDS = ("gateway_id", "zone_number", "name", "doip_logical_address")
ECU_FIELDS = (
    "ecu_id",
    "name",
    "type",
    "zone",
    "hardware_version",
    "default_sw_version",
    "doip_logical_address",
    "update_priority",
)


class RegistryError(ValueError):
    """The registry file is malformed; the message names the entry and the field."""


@dataclass(frozen=True)
class EcuTypeEntry:
    code: str
    name: str


@dataclass(frozen=True)
class ZoneEntry:
    gateway_id: str
    zone_number: int
    name: str
    doip_logical_address: int


@dataclass(frozen=True)
class EcuEntry:
    ecu_id: str
    name: str
    type_code: str
    gateway_id: str
    hardware_version: str
    default_sw_version: str
    doip_logical_address: int
    update_priority: int


@dataclass(frozen=True)
class Registry:
    ecu_types: list[EcuTypeEntry]
    zones: list[ZoneEntry]
    ecus: list[EcuEntry]
    # SHA-256 of the file it was read from, so the audit trail names exactly what was imported.
    sha256: str = ""


def _field(entry: dict[str, Any], name: str, where: str) -> Any:
    if name not in entry or entry[name] in (None, ""):
        raise RegistryError(f"{where}: field '{name}' is missing")
    return entry[name]


def _text(
    entry: dict[str, Any], name: str, where: str, pattern: re.Pattern[str] | None = None
) -> str:
    value = _field(entry, name, where)
    if not isinstance(value, str):
        raise RegistryError(f"{where}: field '{name}' must be text, got {value!r}")
    if pattern is not None and not pattern.fullmatch(value):
        raise RegistryError(f"{where}: field '{name}' has an invalid value {value!r}")
    return value


def _address(entry: dict[str, Any], name: str, where: str) -> int:
    value = _field(entry, name, where)
    try:
        number = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise RegistryError(f"{where}: field '{name}' must be a number like 0x1001, got {value!r}")
    if not 0 < number <= 0xFFFF or isinstance(value, bool):
        raise RegistryError(
            f"{where}: field '{name}' must fit a 16-bit DoIP address, got {value!r}"
        )
    return number


def _version(entry: dict[str, Any], name: str, where: str) -> str:
    value = str(_field(entry, name, where))
    try:
        SemVer.coerce(value)
    except InvalidVersion as exc:
        raise RegistryError(f"{where}: field '{name}': {exc}") from exc
    return value


def _known_keys(entry: dict[str, Any], known: tuple[str, ...], where: str, what: str) -> None:
    """Refuse a key the format does not have: a misspelled optional field would otherwise be
    ignored and its default silently applied (`update_prioity: 1` resetting a priority)."""
    for key in entry:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        if close:
            hint = f" (did you mean '{close[0]}'?)"
        else:
            hint = f"; known {what}s: {', '.join(sorted(known))}"
        raise RegistryError(f"{where}: unknown {what} {key!r}{hint}")


def _format_version(document: dict[str, Any]) -> None:
    if "version" not in document:
        raise RegistryError(f"registry: key 'version' is missing (version: {FORMAT_VERSION})")
    version = document["version"]
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise RegistryError(
            f"registry: format version {version!r} is not supported "
            f"(this server reads version {FORMAT_VERSION})"
        )


def _list(document: dict[str, Any], name: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    items = document.get(name)
    if not isinstance(items, list) or not items:
        raise RegistryError(f"registry: '{name}' must be a non-empty list")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise RegistryError(f"{name}[{index}]: must be a mapping, got {item!r}")
        label = item.get("ecu_id") or item.get("gateway_id")
        where = f"{name}[{index}]" + (f" ({label})" if label else "")
        _known_keys(item, fields, where, "field")
    return items


def _unique(values: list[Any], what: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise RegistryError(f"registry: duplicate {what} {value!r}")
        seen.add(value)


def parse_registry(document: Any) -> Registry:
    """Validate a loaded registry document completely, or raise RegistryError."""
    if not isinstance(document, dict):
        raise RegistryError("registry: the file must hold a mapping with ecu_types, zones and ecus")
    _known_keys(document, DOCUMENT_KEYS, "registry", "key")
    _format_version(document)
    types = [
        EcuTypeEntry(
            code=_text(item, "code", f"ecu_types[{i}]", TYPE_CODE_PATTERN),
            name=_text(item, "name", f"ecu_types[{i}]"),
        )
        for i, item in enumerate(_list(document, "ecu_types", ECU_TYPE_FIELDS))
    ]
    zones = []
    for i, item in enumerate(_list(document, "zones", ZONE_FIELDS)):
        where = f"zones[{i}] ({item.get('gateway_id', '?')})"
        number = _field(item, "zone_number", where)
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 16:
            raise RegistryError(f"{where}: field 'zone_number' must be 1..16, got {number!r}")
        zones.append(
            ZoneEntry(
                gateway_id=_text(item, "gateway_id", where, GATEWAY_ID_PATTERN),
                zone_number=number,
                name=_text(item, "name", where),
                doip_logical_address=_address(item, "doip_logical_address", where),
            )
        )
    type_codes = {t.code for t in types}
    gateway_ids = {z.gateway_id for z in zones}
    ecus = []
    for i, item in enumerate(_list(document, "ecus", ECU_FIELDS)):
        where = f"ecus[{i}] ({item.get('ecu_id', '?')})"
        type_code = _text(item, "type", where)
        if type_code not in type_codes:
            raise RegistryError(f"{where}: field 'type' names unknown ECU type {type_code!r}")
        gateway_id = _text(item, "zone", where)
        if gateway_id not in gateway_ids:
            raise RegistryError(f"{where}: field 'zone' names unknown zone {gateway_id!r}")
        priority = item.get("update_priority", UpdatePriority.NORMAL)
        if priority not in UpdatePriority.values:
            raise RegistryError(
                f"{where}: field 'update_priority' must be one of {UpdatePriority.values}, got {priority!r}"
            )
        ecus.append(
            EcuEntry(
                ecu_id=_text(item, "ecu_id", where, ECU_ID_PATTERN),
                name=_text(item, "name", where),
                type_code=type_code,
                gateway_id=gateway_id,
                hardware_version=_version(item, "hardware_version", where),
                default_sw_version=_version(item, "default_sw_version", where),
                doip_logical_address=_address(item, "doip_logical_address", where),
                update_priority=priority,
            )
        )
    _unique([t.code for t in types], "ECU type code")
    _unique([z.gateway_id for z in zones], "zone gateway_id")
    _unique([z.zone_number for z in zones], "zone_number")
    _unique([e.ecu_id for e in ecus], "ecu_id")
    _unique(
        [e.doip_logical_address for e in ecus] + [z.doip_logical_address for z in zones],
        "DoIP logical address",
    )
    return Registry(ecu_types=types, zones=zones, ecus=ecus)


def load_registry_file(path: Path) -> Registry:
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        raise RegistryError(f"{path}: cannot be read: {exc.strerror}") from exc
    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from exc
    return replace(parse_registry(document), sha256=hashlib.sha256(content).hexdigest())
