"""Content negotiation of the API (settings REST_FRAMEWORK["DEFAULT_CONTENT_NEGOTIATION_CLASS"])."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation


class FormatCheckedNegotiation(DefaultContentNegotiation):
    """An unknown `?format=` is a 400 naming `format` (DRF answers 404, as if the path were
    wrong)."""

    def select_renderer(
        self, request: Any, renderers: list[Any], format_suffix: str | None = None
    ) -> Any:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            if format_suffix:
                raise  # a suffix is part of the path: an unknown one is an unknown path
            known = ", ".join(sorted({renderer.format for renderer in renderers}))
            raise ValidationError({"format": [f"one of {known}"]}) from None
