"""Vehicle timestamps arrive as Unix seconds or ISO 8601; both become aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.api import DomainError


def parse_timestamp(value: Any, *, field: str = "timestamp") -> datetime:
    if isinstance(value, bool):
        raise DomainError("timestamp must be Unix seconds or ISO 8601", field=field)
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise DomainError("timestamp is out of range", field=field)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise DomainError("timestamp must be Unix seconds or ISO 8601", field=field)
        if parsed.tzinfo is None:
            raise DomainError("an ISO 8601 timestamp needs a UTC offset", field=field)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # the first or last hours of the calendar, moved past its end
            raise DomainError("timestamp is out of range", field=field) from None
    raise DomainError("timestamp must be Unix seconds or ISO 8601", field=field)
