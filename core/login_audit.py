"""Failed logins (console, admin and token endpoint alike) go into the audit trail."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from core.audit import record_event
from core.models import AuditEvent


def record_failed_login(
    *, username: str, client_address: str, path: str, locked_out: bool
) -> AuditEvent:
    """Audit one refused login; the password never reaches this function."""
    return record_event(
        action="auth.login_failed",
        actor="system:login",
        object_type="user",
        object_id=username[:64],
        details={
            "username": username[:150],
            "client_address": client_address,
            "path": path[:200],
            "locked_out": locked_out,
        },
    )


def on_user_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    """Receiver of django.contrib.auth's user_login_failed, which every login path sends."""
    username = str(credentials.get(get_user_model().USERNAME_FIELD) or "")
    record_failed_login(
        username=username,
        client_address=request.META.get("REMOTE_ADDR", "") if request is not None else "",
        path=request.path if request is not None else "",
        locked_out=bool(getattr(request, "axes_locked_out", False)),
    )


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: Any
) -> HttpResponse:
    """What a locked-out client gets: the API's JSON error, or the console's sign-in page."""
    retry_after = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(
            {
                "error": {
                    "code": "locked_out",
                    "message": "too many failed logins; try again later",
                    "fields": {},
                }
            },
            status=429,
        )
    else:
        response = render(
            request,
            "registration/locked_out.html",
            {"cooloff_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)},
            status=429,
        )
    response["Retry-After"] = retry_after
    return response
