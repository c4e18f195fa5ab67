"""The API's pagination (settings REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"])."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from core.jsonlimits import MAX_DB_INTEGER


class BoundedPagination(LimitOffsetPagination):
    """`?limit=` and `?offset=` are checked, not guessed: a value that is not a whole number
    in range is a 400 naming the parameter (DRF would silently fall back to the default)."""

    max_limit = 1000
    max_offset = MAX_DB_INTEGER - max_limit

    def get_limit(self, request: Request) -> int | None:
        value = request.query_params.get(self.limit_query_param)
        if value is None:
            return self.default_limit
        return _whole_number(value, self.limit_query_param, low=1, high=self.max_limit)

    def get_offset(self, request: Request) -> int:
        value = request.query_params.get(self.offset_query_param)
        if value is None:
            return 0
        return _whole_number(value, self.offset_query_param, low=0, high=self.max_offset)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
            self.offset_query_param: {"minimum": 0, "maximum": self.max_offset},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters


def _whole_number(value: str, field: str, *, low: int, high: int) -> int:
    # Digits only, and few of them: int() of a huge string is itself slow.
    if (
        not value.isascii()
        or not value.isdigit()
        or len(value) > 20
        or not low <= int(value) <= high
    ):
        raise ValidationError({field: [f"a whole number in {low}..{high}"]})
    return int(value)
