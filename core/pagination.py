"""The API's pagination (settings REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"])."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
from typing import Any

from django.db import connections, transaction
from django.db.models import Q, QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination, LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

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


class KeysetPagination(BasePagination):
    """Cursor (keyset) pagination with the total, for lists that grow to a fleet's size.

    A page is `WHERE (key, pk) > (last key, last pk) ORDER BY key, pk LIMIT n`: its cost does
    not grow with the page number, as OFFSET's does. The view names what may be sorted on in
    `ordering_fields` (each a non-null column) and its `default_ordering`; `?ordering=-field`
    sorts descending. The primary key breaks ties, so no row is skipped or shown twice.

    The total is exact unless the view's `get_count_limit(request)` returns a limit: then
    counting stops after that many rows, in list order so the database reads no more than it
    would for that many pages, and the response says `count_exact: false` ("more than count").
    """

    page_size = 50
    max_page_size = 1000
    page_size_query_param = "limit"
    cursor_query_param = "cursor"
    ordering_query_param = "ordering"
    query_params = (page_size_query_param, cursor_query_param, ordering_query_param)

    def paginate_queryset(
        self, queryset: QuerySet, request: Request, view: Any = None
    ) -> list[Any] | None:
        self.request = request
        limit = self._limit(request)
        field, descending = self._ordering(request, view)
        ordering = f"-{field}" if descending else field
        cursor = self._cursor(request, ordering)
        self.count, self.count_exact = self._count(queryset, field, request, view)
        # A backward page reads the rows before the cursor in reverse, then turns them round.
        backward = bool(cursor and cursor["back"])
        ascending = descending == backward
        direction = "" if ascending else "-"
        rows = queryset.order_by(f"{direction}{field}", f"{direction}pk")
        if cursor:
            rows = rows.filter(_after(field, cursor["key"], cursor["pk"], ascending=ascending))
        page = list(rows[: limit + 1])
        more = len(page) > limit
        page = page[:limit]
        if backward:
            page.reverse()
        self.next_cursor = self.previous_cursor = None
        if page:
            first, last = page[0], page[-1]
            if more or backward:
                self.next_cursor = _encode(ordering, _key(last, field), last.pk, back=False)
            if (more and backward) or (cursor and not backward):
                self.previous_cursor = _encode(ordering, _key(first, field), first.pk, back=True)
        return page

    def _count(
        self, queryset: QuerySet, field: str, request: Request, view: Any
    ) -> tuple[int, bool]:
        get_limit = getattr(view, "get_count_limit", None)
        limit = get_limit(request) if get_limit is not None else None
        if limit is None:
            return queryset.count(), True
        # COUNT(*) over the first limit + 1 rows in list order: the plan of a long page, which
        # stops early, rather than the whole set's (a hash of everything that matches).
        found = _serial_count(queryset.order_by(field, "pk")[: limit + 1])
        return (found, True) if found <= limit else (limit, False)

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "count": self.count,
                "count_exact": self.count_exact,
                "next": self._link(self.next_cursor),
                "previous": self._link(self.previous_cursor),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["count", "count_exact", "results"],
            "properties": {
                "count": {
                    "type": "integer",
                    "description": "rows matching the filters; more than this when count_exact "
                    "is false",
                },
                "count_exact": {
                    "type": "boolean",
                    "description": "false when the list stopped counting at its limit",
                },
                "next": link,
                "previous": link,
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        fields = list(getattr(view, "ordering_fields", ()))
        sortable = [*fields, *(f"-{name}" for name in fields)]
        return [
            {
                "name": self.page_size_query_param,
                "in": "query",
                "required": False,
                "description": "rows per page",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
            {
                "name": self.cursor_query_param,
                "in": "query",
                "required": False,
                "description": "opaque position from a previous page's next or previous link",
                "schema": {"type": "string"},
            },
            {
                "name": self.ordering_query_param,
                "in": "query",
                "required": False,
                "description": "sort key; a leading '-' sorts descending",
                "schema": {"type": "string", "enum": sortable},
            },
        ]

    def _limit(self, request: Request) -> int:
        value = request.query_params.get(self.page_size_query_param)
        if value is None:
            return self.page_size
        return _whole_number(value, self.page_size_query_param, low=1, high=self.max_page_size)

    def _ordering(self, request: Request, view: Any) -> tuple[str, bool]:
        fields = view.ordering_fields
        value = request.query_params.get(self.ordering_query_param) or view.default_ordering
        name = value.removeprefix("-")
        if name not in fields:
            choices = ", ".join(fields)
            raise ValidationError({self.ordering_query_param: [f"one of {choices}, or -name"]})
        return name, value.startswith("-")

    def _cursor(self, request: Request, ordering: str) -> dict[str, Any] | None:
        value = request.query_params.get(self.cursor_query_param)
        if not value:
            return None
        try:
            cursor = json.loads(base64.urlsafe_b64decode(value.encode("ascii")))
            valid = (
                isinstance(cursor, dict)
                and set(cursor) == {"o", "key", "pk", "back"}
                and isinstance(cursor["pk"], int)
                and isinstance(cursor["key"], str | int)
                and isinstance(cursor["back"], bool)
            )
        except (ValueError, UnicodeError):
            valid = False
        if not valid:
            raise ValidationError({self.cursor_query_param: ["not a cursor of this list"]})
        if cursor["o"] != ordering:
            raise ValidationError(
                {self.cursor_query_param: ["made for another ordering: start again without it"]}
            )
        return cursor

    def _link(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        url = self.request.build_absolute_uri()
        return replace_query_param(url, self.cursor_query_param, cursor)


def _serial_count(rows: QuerySet) -> int:
    """rows.count() without parallel workers on PostgreSQL.

    A count that stops after a few hundred rows takes a few milliseconds; a parallel worker
    takes longer than that to start (48 ms against 4 ms at 100k vehicles), and the planner,
    which cannot tell how soon the count stops, asks for one. SET LOCAL lasts until the
    transaction ends: this one, or the request's when it runs inside one.
    """
    connection = connections[rows.db]
    if connection.vendor != "postgresql":
        return rows.count()
    # Inside a transaction already: no savepoint needed, one statement more than a plain count.
    block = contextlib.nullcontext() if connection.in_atomic_block else transaction.atomic(rows.db)
    with block:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        return rows.count()


def _key(row: Any, field: str) -> str | int:
    value = getattr(row, field)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def _after(field: str, key: Any, pk: int, *, ascending: bool) -> Q:
    beyond = "gt" if ascending else "lt"
    return Q(**{f"{field}__{beyond}": key}) | Q(**{field: key, f"pk__{beyond}": pk})


def _encode(ordering: str, key: str | int, pk: int, *, back: bool) -> str:
    raw = json.dumps({"o": ordering, "key": key, "pk": pk, "back": back}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii")
