from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

# Signature families the fleet PKI can issue, keyed by the catalogue's `signature` value.
SIGNATURE_FAMILIES: dict[str, str] = {
    "ecdsa-p256": "ecdsa_secp256r1_sha256",
    "ml-dsa-44": "mldsa44",
    "ml-dsa-65": "mldsa65",
    "ml-dsa-87": "mldsa87",
}

_REQUIRED_FIELDS: dict[str, type] = {
    "id": int,
    "name": str,
    "group": str,
    "group_code": int,
    "signature": str,
    "signature_algorithm": str,
    "signature_code": int,
    "security_level": int,
    "signature_level": int,
    "hybrid": bool,
    "classical": bool,
    "use_case": str,
}


class CatalogueError(ValueError):
    """The configuration catalogue or a policy built from it is invalid."""


@dataclass(frozen=True)
class PqcConfiguration:
    """One TLS 1.3 configuration: a key-exchange group and a certificate signature algorithm."""

    id: int
    name: str
    group: str
    group_code: int
    signature: str
    signature_algorithm: str
    signature_code: int
    security_level: int
    signature_level: int
    hybrid: bool
    classical: bool
    use_case: str


def _parse_entry(index: int, raw: Any) -> PqcConfiguration:
    if not isinstance(raw, dict):
        raise CatalogueError(f"configurations[{index}]: expected a mapping")
    for field, kind in _REQUIRED_FIELDS.items():
        if field not in raw:
            raise CatalogueError(f"configurations[{index}].{field}: missing")
        value = raw[field]
        # bool is a subclass of int, so an int field holding true/false is a typo to catch.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CatalogueError(f"configurations[{index}].{field}: expected {kind.__name__}")
    unknown = set(raw) - set(_REQUIRED_FIELDS)
    if unknown:
        raise CatalogueError(f"configurations[{index}]: unknown fields {sorted(unknown)}")
    if raw["signature"] not in SIGNATURE_FAMILIES:
        raise CatalogueError(
            f"configurations[{index}].signature: {raw['signature']!r} is not one of "
            f"{sorted(SIGNATURE_FAMILIES)}"
        )
    if SIGNATURE_FAMILIES[raw["signature"]] != raw["signature_algorithm"]:
        raise CatalogueError(
            f"configurations[{index}].signature_algorithm: {raw['signature']} signs with "
            f"{SIGNATURE_FAMILIES[raw['signature']]}"
        )
    return PqcConfiguration(**raw)


def parse_catalogue(data: Any) -> tuple[PqcConfiguration, ...]:
    """Validate the parsed YAML document and return its configurations ordered by id."""
    if not isinstance(data, dict) or not isinstance(data.get("configurations"), list):
        raise CatalogueError("configurations: expected a list at the top level")
    configs = [_parse_entry(i, raw) for i, raw in enumerate(data["configurations"])]
    ids = [c.id for c in configs]
    if len(set(ids)) != len(ids):
        raise CatalogueError("configurations: ids must be unique")
    pairs = [(c.group, c.signature) for c in configs]
    if len(set(pairs)) != len(pairs):
        raise CatalogueError("configurations: each (group, signature) pair must appear once")
    return tuple(sorted(configs, key=lambda c: c.id))


def load_catalogue(path: Path | str | None = None) -> tuple[PqcConfiguration, ...]:
    """Load the catalogue from `path` (default: settings.PQC_CONFIG_FILE)."""
    if path is None:
        return _default_catalogue()
    with open(path, encoding="utf-8") as fh:
        return parse_catalogue(yaml.safe_load(fh))


@lru_cache(maxsize=1)
def _default_catalogue() -> tuple[PqcConfiguration, ...]:
    from django.conf import settings

    with open(settings.PQC_CONFIG_FILE, encoding="utf-8") as fh:
        return parse_catalogue(yaml.safe_load(fh))


def get_configuration(
    config_id: int, catalogue: Sequence[PqcConfiguration] | None = None
) -> PqcConfiguration:
    """Return the configuration with this id or raise CatalogueError."""
    for config in catalogue if catalogue is not None else load_catalogue():
        if config.id == config_id:
            return config
    raise CatalogueError(f"config id {config_id} is not in the catalogue")


@dataclass(frozen=True)
class ServerPolicy:
    """Which configurations a listener accepts, most preferred first."""

    configurations: tuple[PqcConfiguration, ...]

    def __post_init__(self) -> None:
        if not self.configurations:
            raise CatalogueError("a policy must accept at least one configuration")

    @property
    def groups(self) -> list[str]:
        """Distinct group names in preference order."""
        return list(dict.fromkeys(c.group for c in self.configurations))

    @property
    def signature_algorithms(self) -> list[str]:
        """Distinct TLS signature scheme names in preference order."""
        return list(dict.fromkeys(c.signature_algorithm for c in self.configurations))

    @property
    def signature_families(self) -> list[str]:
        return list(dict.fromkeys(c.signature for c in self.configurations))

    @property
    def allows_classical(self) -> bool:
        return any(c.classical for c in self.configurations)

    def accepts(self, config: PqcConfiguration) -> bool:
        return any(c.id == config.id for c in self.configurations)

    def match(self, *, group: str, signature_algorithm: str) -> PqcConfiguration | None:
        """The accepted configuration that a negotiated group and signature correspond to."""
        for config in self.configurations:
            if config.group == group and config.signature_algorithm == signature_algorithm:
                return config
        return None


def build_policy(
    *,
    catalogue: Sequence[PqcConfiguration] | None = None,
    accept: Iterable[int] | None = None,
    prefer: int | None = None,
    allow_classical: bool | None = None,
) -> ServerPolicy:
    """Build a listener policy.

    `accept` limits the configuration ids (default: all). Classical configurations are
    dropped unless `allow_classical` (default: settings.PQC_ALLOW_CLASSICAL) is true or
    they are named explicitly in `accept`. `prefer` (default: settings.PQC_DEFAULT_CONFIG)
    moves one configuration, and so its group, to the front.
    """
    from django.conf import settings

    configs = list(catalogue if catalogue is not None else load_catalogue())
    if allow_classical is None:
        allow_classical = bool(getattr(settings, "PQC_ALLOW_CLASSICAL", False))
    if prefer is None:
        prefer = int(getattr(settings, "PQC_DEFAULT_CONFIG", 1))
    if accept is not None:
        wanted = list(dict.fromkeys(accept))
        known = {c.id for c in configs}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise CatalogueError(f"accept: unknown config ids {missing}")
        configs = [c for c in configs if c.id in wanted]
    elif not allow_classical:
        configs = [c for c in configs if not c.classical]
    configs.sort(key=lambda c: (c.id != prefer, c.classical))
    return ServerPolicy(configurations=tuple(configs))
