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
    """Readiness: the database answers and every background service of this process is up.

    A bridge that died or lost its broker makes the process unready (503), so a load balancer
    or orchestrator sees what the logs say; the error texts stay in the logs, not here.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    services = {name: state["state"] for name, state in health.background_services().items()}
    ready = health.healthy()
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "services": services},
        status=200 if ready else 503,
    )
