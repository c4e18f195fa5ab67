"""Query-string filtering for list endpoints: django-filter, strictly.

django-filter ignores a parameter it does not know, so `?stauts=active` would list the whole
fleet as if it were filtered. Here an unknown parameter is a 400 naming it, as is a malformed
value (django-filter's own validation).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request


class StrictFilterBackend(DjangoFilterBackend):
    """The view's `filterset_class`, refusing parameters that neither it nor paging knows."""

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        check_parameters(request, view)
        return super().filter_queryset(request, queryset, view)


def check_parameters(request: Request, view: Any) -> None:
    """400 naming every query parameter the view's filters and pagination do not take."""
    filterset = getattr(view, "filterset_class", None)
    known = set(filterset.base_filters) if filterset is not None else set()
    known.update(getattr(getattr(view, "pagination_class", None), "query_params", ()))
    known.update(getattr(view, "extra_query_params", ()))
    known.add("format")  # content negotiation checks its own value
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        accepted = ", ".join(sorted(known))
        raise ValidationError(
            {name: [f"unknown parameter; accepted: {accepted}"] for name in unknown}
        )


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 instant, handed on in UTC.

    Python reads offsets up to 23:59 where PostgreSQL keeps at most 15:59, so an instant is
    moved to UTC before it reaches a query; one that UTC puts before year 1 or after 9999 is
    refused like any malformed value.
    """

    def to_python(self, value: Any) -> datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("outside years 1 to 9999 in UTC", code="invalid") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
