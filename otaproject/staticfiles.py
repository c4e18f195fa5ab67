"""Static files for the console: WhiteNoise, with content-hashed names and pre-compressed copies."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.storage import CompressedManifestStaticFilesStorage

VEHICLE_URLCONF = "otaproject.urls_vehicle"


class ConsoleStaticFiles(WhiteNoiseMiddleware):
    """WhiteNoise on the console listener only: the vehicle listener serves no static files."""

    def add_files(self, root: str, prefix: str | None = None) -> None:
        # Before collectstatic there is no STATIC_ROOT, and nothing to warn about: the apps'
        # folders (WHITENOISE_USE_FINDERS) serve the plain names pages link until then.
        if os.path.isdir(root):
            super().add_files(root, prefix)

    def __call__(self, request: Any) -> Any:
        if getattr(request, "urlconf", None) == VEHICLE_URLCONF:
            return self.get_response(request)
        response = super().__call__(request)
        if isinstance(request, ASGIRequest) and response.streaming and not response.is_async:
            # The file is read in a worker thread, as Django's own static handler does under
            # ASGI, rather than by the event loop with a warning for each file.
            response.streaming_content = _read_in_thread(response.streaming_content)
        return response


async def _read_in_thread(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in await sync_to_async(list)(chunks):
        yield chunk


class StaticStorage(CompressedManifestStaticFilesStorage):
    """Hashed, gzip-compressed names once collectstatic has run; plain names before it.

    `scripts/serve` collects before it starts the server. Tests and a fresh clone render pages
    with no manifest yet, and then link the plain names WhiteNoise serves from the apps' folders.
    """

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:
            return name
        return super().stored_name(name)
