"""VIN validation per ISO 3779."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

# 17 characters from 0-9 and A-Z without I, O and Q (ISO 3779 forbids them as look-alikes of 1 and 0).
VIN_PATTERN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")


def validate_vin(value: str) -> None:
    if not isinstance(value, str) or not VIN_PATTERN.fullmatch(value):
        raise ValidationError(
            "%(value)s is not a VIN: 17 characters, digits and capital letters without I, O, Q.",
            code="invalid_vin",
            params={"value": value},
        )
