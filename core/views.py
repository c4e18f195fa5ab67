from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse

from core import health


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: answers without authentication and touches the database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: what the process depends on answers, and its background services are up.

    Each check answers {"ok": ...} with a few facts (never secrets or error texts, which stay
    in the logs); a dead bridge, a lost broker or an expired certificate makes it 503.
    """
    ready, checks = health.readiness()
    services = {name: state["state"] for name, state in health.background_services().items()}
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks, "services": services},
        status=200 if ready else 503,
    )
