"""OpenAI's Responses API: `POST /v1/responses` (SPEC 3), so `client.responses.create` works.

Tollgate keeps no responses: `store: true` is refused (400 naming `store`), and so is what needs a
stored one (`previous_response_id`, `conversation`, `background`). A call that leaves `store` out
is sent on with `store: false`: OpenAI's default would keep it on the operator's account.
"""

from __future__ import annotations

import re

from app.metering import estimate
from app.metering.estimate import PromptEstimate
from app.proxy.bodies import positive_int
from app.proxy.errors import ProxyError
from app.proxy.formats.chat import output_tokens
from app.proxy.formats.format import (
    Format,
    StreamReader,
    Usage,
    check_tools,
    data_of,
    event_name,
    unmetered,
    valid_counts,
)

# Deltas that carry output: text, refusals, function-call arguments, reasoning summaries.
OUTPUT_DELTA = re.compile(rb'"delta": ?"((?:[^"\\]|\\.)+)"')
ENDS = frozenset(("response.completed", "response.incomplete", "response.failed"))
END_NAMES = frozenset(end.encode() for end in ENDS)
NEEDS_STORE = ("previous_response_id", "conversation")
# Tools the model calls back through the client; the others (web search, file search, code
# interpreter, image generation, MCP...) run upstream, billed per use and by results never seen here.
CLIENT_TOOLS = ("function", "custom")


class Responses(Format):
    name = "responses"
    endpoint = "responses"
    customer_fields = ("user", "safety_identifier")  # the successor of `user`, in this API

    def check(self, body: dict) -> bool:
        if body.get("store") not in (None, False):
            raise ProxyError(
                "invalid_request",
                "store: true is not supported: Tollgate keeps no responses; send false or leave it out.",
                param="store",
            )
        for name in NEEDS_STORE:
            if body.get(name) is not None:
                raise ProxyError(
                    "invalid_request",
                    f"{name} is not supported: Tollgate keeps no responses; send the whole input instead.",
                    param=name,
                )
        if body.get("background"):
            raise ProxyError(
                "invalid_request",
                "background is not supported: it needs a stored response.",
                param="background",
            )
        if body.get("prompt") is not None:
            raise unmetered("prompt", "a prompt stored upstream cannot be sized")
        value = body.get("input")
        if not (isinstance(value, str) and value) and not (isinstance(value, list) and value):
            raise ProxyError(
                "invalid_request", "input must be a non-empty string or list of items.", param="input"
            )
        if isinstance(value, list) and not all(isinstance(item, dict) for item in value):
            raise ProxyError("invalid_request", "input items must be objects.", param="input")
        positive_int(body, "max_output_tokens")
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise ProxyError("invalid_request", "stream must be a boolean.", param="stream")
        _check_metered(body)
        return bool(stream)

    def prompt(self, body: dict) -> PromptEstimate:
        # Items count as messages do (their framing, their images at a fixed cost).
        items = body["input"] if isinstance(body["input"], list) else [{"content": body["input"]}]
        view = {k: v for k, v in body.items() if k != "input"}
        view["messages"] = [dict(item, content=_parts(item)) for item in items]
        return estimate.chat_prompt(view)

    def completion(self, body: dict) -> int | None:
        return body.get("max_output_tokens")

    def outgoing(self, body: dict, cap: int | None, stream: bool) -> tuple[dict, bool]:
        out = dict(body, store=False)
        limit = body.get("max_output_tokens")
        if cap is not None:
            out["max_output_tokens"] = max(1, min(limit or cap, cap))
        return out, False

    def usage(self, reply: object) -> Usage | None:
        return usage_of(reply.get("usage") if isinstance(reply, dict) else None)

    def reader(self, wants_usage: bool) -> StreamReader:
        return ResponsesStream()


def _check_metered(body: dict) -> None:
    """Refuse what a hold cannot cover (SPEC 5.1): tools run upstream, files and prompts held there."""
    check_tools(body, CLIENT_TOOLS)
    items = body["input"] if isinstance(body["input"], list) else ()
    for i, item in enumerate(items):
        content = item.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "input_file" or (isinstance(part, dict) and part.get("file_id") is not None):
                raise unmetered(f"input[{i}].content[{j}]", "a file is billed by its pages or held upstream")


def _parts(item: dict) -> object:
    """An item's content, its `input_image` parts kept as images so they count at a fixed cost."""
    return item.get("content", {k: v for k, v in item.items() if k != "type"})


def usage_of(usage: object) -> Usage | None:
    """The Responses API's usage: input and output tokens."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not valid_counts(prompt, completion):
        return None
    # OpenAI's cached tokens are part of input_tokens, charged at the input rate as for chat
    # completions (their discount differs by model; Anthropic's cache rates do not apply).
    return Usage(prompt, completion)  # type: ignore[arg-type]


class ResponsesStream(StreamReader):
    """Passes the events through untouched: usage and the end from response.completed (or
    .incomplete, .failed)."""

    def feed(self, events: list[bytes]) -> bytes:
        for event in events:
            # Decided by the event's name, never by what its data holds: response.completed
            # repeats the request's tools, schemas and metadata, which may hold any word.
            name = event_name(event)
            if name is None:
                data = data_of(event)
                kind = data.get("type") if isinstance(data, dict) else None
                name = kind.encode() if isinstance(kind, str) else b""
            if name in END_NAMES:
                self._end(data_of(event))
            elif name.endswith(b".delta"):
                self.output += output_tokens(event, OUTPUT_DELTA)
        return b"".join(event + b"\n\n" for event in events)

    def _end(self, data: object) -> None:
        if not isinstance(data, dict) or data.get("type") not in ENDS:
            return
        self.done = True
        response = data.get("response")
        usage = usage_of(response.get("usage") if isinstance(response, dict) else None)
        if usage is not None:
            self.usage, self.usage_final = usage, True


FORMAT = Responses()
