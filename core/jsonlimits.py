"""Bounds on untrusted JSON that must hold before it is parsed.

Python's json module recurses once per nesting level, so a payload of a few kilobytes of
brackets exhausts the interpreter stack. `exceeds_depth` measures nesting with a scan of the
raw bytes (brackets inside strings do not count) so that such a document is refused before
any parser sees it.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

# Deep enough for every document the API and the MQTT protocol define (the deepest, a
# diagnostics response, nests 3 levels) with room for free-form objects such as a command
# result; far below the interpreter's recursion limit.
MAX_JSON_DEPTH = 32

# 64-bit signed: the widest integer column of the database.
MAX_DB_INTEGER = 2**63 - 1

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JSONDepthError(ValueError):
    """The document nests deeper than allowed."""


def exceeds_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in `data` nest more than `limit` levels deep."""
    # Fast path, all in C: a document with few opening brackets cannot be deep.
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    return max(accumulate(_STEP[b] for b in brackets), default=0) > limit


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # A literal such as 1e999 parses to infinity, which no column or consumer can hold.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is beyond the range of a double")
    return value


def loads(data: bytes | str, *, limit: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted JSON: depth bounded before parsing, only finite numbers."""
    raw = data.encode() if isinstance(data, str) else data
    if exceeds_depth(raw, limit):
        raise JSONDepthError(f"JSON nests deeper than {limit} levels")
    return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
