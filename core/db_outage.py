"""During a database outage every request gets a quick 503 with Retry-After, not an HTML 500."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.db import is_database_unavailable

logger = logging.getLogger(__name__)


def unavailable_response() -> JsonResponse:
    retry_after = int(getattr(settings, "OTA_DB_RETRY_AFTER_SECONDS", 5))
    response = JsonResponse(
        {
            "error": {
                "code": "database_unavailable",
                "message": "the service is temporarily unavailable; retry later",
                "fields": {},
            }
        },
        status=503,
    )
    response["Retry-After"] = str(retry_after)
    return response


class DatabaseOutageMiddleware:
    """Turns an unreachable database (connection refused, pool exhausted) into 503 JSON."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_unavailable(exception):
            return None
        logger.warning(
            "database unavailable for %s %s: %s", request.method, request.path, exception
        )
        return unavailable_response()
