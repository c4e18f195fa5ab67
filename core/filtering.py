"""Query-string filtering for list endpoints: django-filter, strictly.

django-filter ignores a parameter it does not know, so `?stauts=active` would list the whole
fleet as if it were filtered. Here an unknown parameter is a 400 naming it, as is a malformed
value (django-filter's own validation).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
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
