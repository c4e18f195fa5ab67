"""Structured logs: JSON lines (OTA_LOG_FORMAT=json) carrying request, vehicle and campaign ids.

The ids live in context variables, set by the request path (`RequestContext`) and by the MQTT
ingest (`log_context`), so every log call below them carries them without passing them along;
asyncio tasks and threads started with a copied context inherit them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse

access_logger = logging.getLogger("ota.access")

# The ids a log line may carry, in the order they are written.
CONTEXT_FIELDS = ("request_id", "vehicle_vin", "campaign_id", "update_id")
_context: dict[str, contextvars.ContextVar[Any]] = {
    name: contextvars.ContextVar(f"ota_log_{name}", default=None) for name in CONTEXT_FIELDS
}
# A client-chosen request id is kept only if it looks like one (it ends up in every log line).
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
REQUEST_ID_HEADER = "X-Request-ID"


def current_context() -> dict[str, Any]:
    return {name: var.get() for name, var in _context.items() if var.get() is not None}


@contextlib.contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Set some of CONTEXT_FIELDS for the code inside the block."""
    tokens = [(_context[name], _context[name].set(value)) for name, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


_make_record = logging.getLogRecordFactory()


def _record_with_context(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Stamp the ids on each record when it is made, so a handler that formats it later (on
    another thread, or a test's capture) still sees the ids of the code that logged."""
    record = _make_record(*args, **kwargs)
    for name, var in _context.items():
        value = var.get()
        if value is not None and not hasattr(record, name):
            setattr(record, name, value)
    return record


# Imported by the logging configuration (JsonFormatter) and the middleware: installed once.
if getattr(_make_record, "__name__", "") != "_record_with_context":
    logging.setLogRecordFactory(_record_with_context)

# Attributes every LogRecord has; anything else came through `extra=` and is written too.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context ids and extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def _request_id(request: HttpRequest) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if REQUEST_ID_PATTERN.match(given) else uuid.uuid4().hex


def _vehicle_vin(request: HttpRequest) -> str | None:
    from core.auth import TLS_META_KEY

    identity = request.META.get(TLS_META_KEY) or {}
    return identity.get("vin") or None


class RequestContext:
    """Middleware: request id (echoed in X-Request-ID), vehicle VIN, campaign id, access log.

    The access log line is written when the response is handed to the server, so a streamed
    download's line says when its headers left, not its last byte.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request_id = _request_id(request)
        # campaign_id and update_id start empty, so what process_view sets ends with the request.
        with log_context(
            request_id=request_id,
            vehicle_vin=_vehicle_vin(request),
            campaign_id=None,
            update_id=None,
        ):
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            access_logger.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "listener": request.scope.get("ota_listener", "")
                    if hasattr(request, "scope")
                    else "",
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "client": request.META.get("REMOTE_ADDR", ""),
                },
            )
        return response

    def process_view(
        self, request: HttpRequest, view: Any, args: Any, kwargs: dict[str, Any]
    ) -> None:
        """Routes under a campaign name it in their kwargs: keep it for the log lines."""
        match = request.resolver_match
        campaign = kwargs.get("campaign_id")
        if campaign is None and match is not None and "campaign" in (match.url_name or ""):
            campaign = kwargs.get("pk")
        if campaign is not None:
            text = str(campaign)
            _context["campaign_id"].set(int(text) if text.isdigit() else text[:64])
