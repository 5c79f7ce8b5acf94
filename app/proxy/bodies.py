"""Parsing and checking request bodies: a bad one gets a 400 naming the field, before any write."""

from __future__ import annotations

import json

from app import nesting
from app.metering.estimate import COMPLETION_FIELDS
from app.proxy.errors import ProxyError

MAX_N = 128


def parse(raw: bytes) -> dict:
    if nesting.too_deep(raw):
        raise ProxyError("invalid_request", nesting.TOO_DEEP)
    try:
        body = json.loads(raw)
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


def _positive_int(body: dict, name: str, upper: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (upper and value > upper):
        limit = f" and at most {upper}" if upper else ""
        raise ProxyError("invalid_request", f"{name} must be an integer of at least 1{limit}.", param=name)


def check_chat(body: dict) -> bool:
    """Validate a chat completion body; returns whether it streams."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ProxyError("invalid_request", "messages must be a non-empty list.", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ProxyError(
                "invalid_request",
                f"messages[{i}] must be an object with a string role.",
                param=f"messages[{i}]",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise ProxyError(
                "invalid_request",
                f"messages[{i}].content must be a string or a list of parts.",
                param=f"messages[{i}].content",
            )
    for name in COMPLETION_FIELDS:
        _positive_int(body, name)
    if "chat_template" in body:
        # vLLM renders a request's own template: a few bytes of Jinja can make a prompt of any length.
        raise ProxyError(
            "invalid_request",
            "chat_template is not accepted: the deployment's own template applies.",
            param="chat_template",
        )
    _positive_int(body, "n", MAX_N)
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise ProxyError("invalid_request", "stream must be a boolean.", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ProxyError("invalid_request", "stream_options must be an object.", param="stream_options")
    return bool(stream)


def check_embeddings(body: dict) -> None:
    value = body.get("input")
    ok = (isinstance(value, str) and value != "") or (
        isinstance(value, list)
        and value
        and all(
            (isinstance(v, str) and v != "")
            or (isinstance(v, int) and not isinstance(v, bool))
            or (isinstance(v, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in v))
            for v in value
        )
    )
    if not ok:
        raise ProxyError(
            "invalid_request",
            "input must be a non-empty string, a list of strings, or token arrays.",
            param="input",
        )
