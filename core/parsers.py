"""The API's request body parsers (settings REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"])."""

from __future__ import annotations

from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.jsonlimits import MAX_JSON_DEPTH, JSONDepthError, loads


class BoundedJSONParser(JSONParser):
    """JSON bodies nested at most MAX_JSON_DEPTH levels (checked before parsing), finite numbers.

    Python's parser recurses per level, so an unbounded body of brackets crashes the request
    with a RecursionError; here it is a 400 naming the body.
    """

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return loads(stream.read().decode(encoding), limit=MAX_JSON_DEPTH)
        except JSONDepthError as exc:
            raise ParseError(str(exc), code="too_deep") from None
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error: {exc}"[:300]) from None
