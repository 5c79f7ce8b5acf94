"""Parsing and checking request bodies: a bad one gets a 400 naming the field, before any write."""

from __future__ import annotations

from app import json_codec, nesting
from app.proxy.errors import ProxyError


def parse(raw: bytes) -> dict:
    if nesting.too_deep(raw):
        raise ProxyError("invalid_request", nesting.TOO_DEEP)
    try:
        body = json_codec.loads(raw, finite=True)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProxyError("invalid_request", f"The request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # a second guard: too_deep should have refused it
        raise ProxyError("invalid_request", nesting.TOO_DEEP) from exc
    if not isinstance(body, dict):
        raise ProxyError("invalid_request", "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ProxyError(
            "invalid_request", "model is required and must be a non-empty string.", param="model"
        )
    return body


def positive_int(body: dict, name: str, upper: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (upper and value > upper):
        limit = f" and at most {upper}" if upper else ""
        raise ProxyError("invalid_request", f"{name} must be an integer of at least 1{limit}.", param=name)
