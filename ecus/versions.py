"""Semantic versions (semver 2.0.0) and a sort key that orders them by precedence in SQL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

import semver

# Numeric fields wider than this cannot be encoded in a fixed-width key.
_MAX_NUMERIC_DIGITS = 12
# Separators below every character semver allows ([0-9A-Za-z-]), so a shorter identifier list
# sorts first and "alpha" precedes "alpha-x", as semver's ASCII comparison demands.
_IDENT_SEPARATOR = b"!"
_RELEASE_MARKER = b"~"
_PRERELEASE_MARKER = b"-"
_VERSION_CHARS = re.compile(r"[0-9A-Za-z.+-]*")


class InvalidVersion(ValueError):
    """Raised for a string that is not a semantic version."""


@total_ordering
@dataclass(frozen=True)
class SemVer:
    """A parsed semantic version; build metadata is kept but ignored in comparisons."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> SemVer:
        _check_text(text)
        try:
            parsed = semver.Version.parse(text)
        except (ValueError, TypeError) as exc:
            raise InvalidVersion(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH)") from exc
        prerelease = tuple(parsed.prerelease.split(".")) if parsed.prerelease else ()
        version = cls(parsed.major, parsed.minor, parsed.patch, prerelease, parsed.build or "")
        for number in (version.major, version.minor, version.patch):
            if len(str(number)) > _MAX_NUMERIC_DIGITS:
                raise InvalidVersion(
                    f"{text!r} has a field longer than {_MAX_NUMERIC_DIGITS} digits"
                )
        for ident in prerelease:
            if ident.isdigit() and len(ident) > _MAX_NUMERIC_DIGITS:
                raise InvalidVersion(f"{text!r} has a numeric identifier that is too long")
        return version

    @classmethod
    def coerce(cls, text: str) -> SemVer:
        """Accept the short forms vehicles report ("2.0", "3") by padding missing fields with 0.

        Nothing else is forgiven: the text as given is what gets stored and signed into
        packages, so surrounding whitespace is refused rather than stripped.
        """
        _check_text(text)
        core, sep, rest = text.partition("-")
        core, plus, build = core.partition("+")
        parts = core.split(".")
        if 1 <= len(parts) < 3 and all(p.isdigit() for p in parts):
            core = ".".join(parts + ["0"] * (3 - len(parts)))
            return cls.parse(core + (plus + build) + (sep + rest))
        return cls.parse(text)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + self.build
        return text

    @property
    def sort_key(self) -> str:
        """Hex text whose byte order is semver precedence; hex keeps database collations honest."""
        raw = b".".join(str(n).zfill(_MAX_NUMERIC_DIGITS).encode() for n in self._core())
        if self.prerelease:
            encoded = [
                (b"0" + ident.zfill(_MAX_NUMERIC_DIGITS).encode())
                if ident.isdigit()
                else (b"1" + ident.encode("ascii"))
                for ident in self.prerelease
            ]
            raw += _PRERELEASE_MARKER + _IDENT_SEPARATOR.join(encoded)
        else:
            raw += _RELEASE_MARKER
        return raw.hex()

    def _core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self.sort_key < other.sort_key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._core() == other._core() and self.prerelease == other.prerelease

    def __hash__(self) -> int:
        return hash((self._core(), self.prerelease))


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise InvalidVersion(f"version must be a string, got {type(text).__name__}")
    if len(text) > VERSION_MAX_LENGTH:
        raise InvalidVersion(f"{text[:16]!r}... is longer than {VERSION_MAX_LENGTH} characters")
    # Checked here as well as by the semver parser, because this is the charset an OTAP
    # package's version fields allow (docs/PACKAGE_FORMAT.md), whatever semver's parser accepts.
    if not _VERSION_CHARS.fullmatch(text):
        raise InvalidVersion(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH)")


def version_key(text: str) -> str:
    """The database sort key of a version string (raises InvalidVersion)."""
    return SemVer.parse(text).sort_key


# Longest key: three 12-digit fields plus a long pre-release; the model fields use this bound.
VERSION_KEY_MAX_LENGTH = 1024
VERSION_MAX_LENGTH = 64
