"""JSON on the hot path: orjson (in C, several times faster than json) where it gives the same
answer as the standard json module, json itself where it would not: orjson reads integers past
64 bits as floats and refuses what json accepts (NaN, UTF-16 text, lone surrogates), and writes
neither big integers nor lone surrogates."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

# 19 digits in a row may be an integer orjson cannot hold (below -2**63, above 2**64 - 1).
_LONG_NUMBER = re.compile(rb"\d{19}")


def loads(raw: bytes, finite: bool = False) -> Any:
    """Parse JSON; raises ValueError (or RecursionError) as json.loads does. `finite` refuses
    NaN, Infinity and numbers past a double's range, which json reads and no JSON writer keeps."""
    if _LONG_NUMBER.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    if finite:
        return json.loads(raw, parse_constant=_not_a_number, parse_float=_finite)
    return json.loads(raw)


def _not_a_number(text: str) -> float:
    raise ValueError(f"{text} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is past the range of a number")
    return value


def dumps(value: Any) -> bytes:
    """Compact JSON, ASCII-escaped only where orjson cannot write it."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: an integer past 64 bits, a lone surrogate
        return json.dumps(value, separators=(",", ":")).encode()
