"""Refuse request input that no view can store: NUL characters in the path or query.

PostgreSQL text cannot hold NUL (0x00), so a `%00` that reaches a database lookup fails the
request with a 500; here it is a 400 before any view runs.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

NUL = "\x00"


class RefuseNulCharacters:
    """Django middleware: 400 for a NUL in the path or in a query parameter's name or value."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        field = _field_with_nul(request)
        if field is None:
            return self.get_response(request)
        message = "must not contain NUL characters"
        if request.path.startswith("/api/"):
            body = {"error": {"code": "invalid", "message": message, "fields": {field: [message]}}}
            return JsonResponse(body, status=400)
        return HttpResponseBadRequest(f"{field} {message}")


def _field_with_nul(request: HttpRequest) -> str | None:
    if NUL in request.path:
        return "path"
    for name, values in request.GET.lists():
        if NUL in name or any(NUL in value for value in values):
            return name.replace(NUL, "") or "query"
    return None
