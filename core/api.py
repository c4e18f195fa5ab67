"""Cross-cutting API behaviour: one JSON error shape and domain errors mapped to HTTP codes."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.jsonlimits import MAX_DB_INTEGER


class DomainError(Exception):
    """A rule of the domain was broken; `field` names the input at fault when there is one."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class ConflictError(DomainError):
    """The request is valid but clashes with the current state (HTTP 409)."""

    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class NotFoundError(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class BoundedIntegerField(serializers.IntegerField):
    """An integer that fits the database's 64-bit columns unless a narrower bound is given."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", -MAX_DB_INTEGER - 1)
        kwargs.setdefault("max_value", MAX_DB_INTEGER)
        super().__init__(**kwargs)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every error is `{"error": {"code", "message", "fields": {name: [messages]}}}`, in JSON
    whatever format the request asked for (a CSV export's error is not a CSV row)."""
    response = _error_response(exc, context)
    request = context.get("request")
    if response is not None and request is not None:
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type
    return response


def _error_response(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        fields = {exc.field: [exc.message]} if exc.field else {}
        body = {"error": {"code": exc.code, "message": exc.message, "fields": fields}}
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        fields = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        body = {"error": {"code": "invalid", "message": "invalid input", "fields": fields}}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, SuspiciousOperation):
        # Django refuses a request body it will not read (too large, too many form fields);
        # left alone it would answer with an HTML page.
        code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        if not isinstance(exc, RequestDataTooBig):
            code = status.HTTP_400_BAD_REQUEST
        message = str(exc) or "request body refused"
        body = {"error": {"code": "invalid", "message": message, "fields": {"body": [message]}}}
        return Response(body, status=code)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(detail, dict) and "detail" not in detail:
        fields = detail
        message = "invalid input"
        code = "invalid"
    else:
        fields = {}
        message_detail = detail.get("detail", detail) if isinstance(detail, dict) else detail
        message = str(message_detail)
        # DRF turns Django's Http404 and PermissionDenied into its own errors: the code is on
        # the detail of the response, not on the exception raised.
        code = (
            getattr(getattr(exc, "detail", None), "code", None)
            or getattr(message_detail, "code", None)
            or getattr(exc, "default_code", "error")
        )
        if isinstance(exc, ParseError):
            fields = {"body": [message]}
    response.data = {"error": {"code": code, "message": message, "fields": fields}}
    return response
