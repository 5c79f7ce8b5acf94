"""JSON on the hot path: orjson (in C, several times faster than json) where it gives the same
answer, the standard json module where orjson refuses what json accepts (integers past 64 bits,
NaN, UTF-16 bodies, lone surrogates), so behaviour does not depend on which one ran."""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(raw: bytes | str) -> Any:
    """Parse JSON; raises ValueError (or RecursionError) as json.loads does."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: an integer past 64 bits, a key that is not a string
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
