"""Anthropic's Messages API: `POST /v1/messages` (SPEC 3), in Anthropic's own request, response,
stream-event and error shapes, so the `anthropic` SDK works unchanged."""

from __future__ import annotations

import re

from flask import Response

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

# Deltas that carry output: text, tool input, thinking.
OUTPUT_DELTA = re.compile(rb'"(?:text|partial_json|thinking)": ?"((?:[^"\\]|\\.)+)"')
ROLES = ("user", "assistant")
# Anthropic adds a system prompt of its own when tools are given: up to about 530 tokens (Claude 3
# Opus; 313-346 on later models). A hold must cover it.
TOOLS_PROMPT = 600
# What the call's prompt estimate cannot size, or whose fees Tollgate cannot meter: server tools
# (web search, code execution... billed per use and in tokens of results never seen here),
# documents and files held elsewhere or sized by pages, servers the upstream calls itself.
UNMETERED = ("mcp_servers", "container")
SIZED_SOURCES = ("text", "base64", "url", "content")


class Messages(Format):
    name = "messages"
    endpoint = "messages"

    def check(self, body: dict) -> bool:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ProxyError("invalid_request", "messages must be a non-empty list.", param="messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise ProxyError(
                    "invalid_request",
                    f"messages[{i}] must be an object whose role is user or assistant.",
                    param=f"messages[{i}]",
                )
            if not isinstance(message.get("content"), str | list):
                raise ProxyError(
                    "invalid_request",
                    f"messages[{i}].content must be a string or a list of content blocks.",
                    param=f"messages[{i}].content",
                )
        if body.get("max_tokens") is None:
            raise ProxyError("invalid_request", "max_tokens is required.", param="max_tokens")
        positive_int(body, "max_tokens")
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            raise ProxyError(
                "invalid_request", "system must be a string or a list of text blocks.", param="system"
            )
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise ProxyError("invalid_request", "stream must be a boolean.", param="stream")
        _check_metered(body)
        return bool(stream)

    def prompt(self, body: dict) -> PromptEstimate:
        # The whole body but its settings, as for chat: system, messages, tools and their schemas,
        # and the system prompt Anthropic adds for tools.
        found = estimate.chat_prompt(body)
        if not body.get("tools"):
            return found
        return PromptEstimate(found.upper + TOOLS_PROMPT, found.likely + TOOLS_PROMPT)

    def completion(self, body: dict) -> int | None:
        return body["max_tokens"]

    def outgoing(self, body: dict, cap: int | None, stream: bool) -> tuple[dict, bool]:
        if cap is None or body["max_tokens"] <= cap:
            return body, False
        return dict(body, max_tokens=max(1, cap)), False

    def usage(self, reply: object) -> Usage | None:
        return usage_of(reply.get("usage") if isinstance(reply, dict) else None)

    def reader(self, wants_usage: bool) -> StreamReader:
        return MessagesStream()

    def error(self, err: ProxyError, headers: dict[str, str] | None = None) -> Response:
        return err.response(headers, anthropic=True)


def _check_metered(body: dict) -> None:
    """Refuse what a hold cannot cover (SPEC 5.1): server tools, documents held elsewhere."""
    for name in UNMETERED:
        if body.get(name) is not None:
            raise unmetered(name, "the upstream acts on it by itself")
    check_tools(body, (None, "custom"))  # a tool without a type is a custom one: the client runs it
    for i, message in enumerate(body["messages"]):
        for j, block in enumerate(message["content"] if isinstance(message["content"], list) else ()):
            if not isinstance(block, dict):
                raise ProxyError(
                    "invalid_request", "content blocks must be objects.", param=f"messages[{i}].content[{j}]"
                )
            source = block.get("source")
            kind = source.get("type") if isinstance(source, dict) else None
            if block.get("type") == "document" and kind != "text":
                raise unmetered(
                    f"messages[{i}].content[{j}]",
                    "a document is billed by its pages, not its size",
                )
            if source is not None and kind not in SIZED_SOURCES:
                raise unmetered(f"messages[{i}].content[{j}].source", "a file held upstream cannot be sized")


def usage_of(usage: object, start: Usage | None = None) -> Usage | None:
    """Anthropic's usage block: input, cache writes and cache reads are the prompt (SPEC 3). A
    message_delta's block updates the counts message_start gave (`start`) with those it carries."""
    if not isinstance(usage, dict):
        return None
    base = start or Usage(0, 0)

    def count(name: str, before: int) -> object:
        # A message_delta leaves out, or sends null for, what it does not update; a whole
        # reply or message_start sends null for "none".
        value = usage.get(name)
        return value if value is not None else (before if start is not None else 0)

    fresh = count("input_tokens", base.prompt - base.cache_read - base.cache_write)
    written = count("cache_creation_input_tokens", base.cache_write)
    read = count("cache_read_input_tokens", base.cache_read)
    output = count("output_tokens", base.completion)
    split = usage.get("cache_creation")
    hour = split.get("ephemeral_1h_input_tokens") if isinstance(split, dict) else None
    hour = hour if hour is not None else base.cache_write_1h
    if not valid_counts(fresh, written, read, output, hour) or hour > written:  # type: ignore[operator]
        return None
    return Usage(fresh + written + read, output, read, written, hour)  # type: ignore[operator, arg-type]


class MessagesStream(StreamReader):
    """Passes Anthropic's events through untouched: usage from message_start and message_delta,
    the end at message_stop."""

    def feed(self, events: list[bytes]) -> bytes:
        for event in events:
            if b'"usage"' in event:
                data = data_of(event)
                if isinstance(data, dict):
                    self._note(data)
            elif b"message_stop" in event and event_name(event) == b"message_stop":
                self.done = True
            else:
                self.output += output_tokens(event, OUTPUT_DELTA)
        return b"".join(event + b"\n\n" for event in events)

    def _note(self, data: dict) -> None:
        if data.get("type") == "message_start":
            message = data.get("message")
            self.usage = usage_of(message.get("usage") if isinstance(message, dict) else None)
        elif data.get("type") == "message_delta":
            final = usage_of(data.get("usage"), self.usage)
            if final is not None:
                self.usage, self.usage_final = final, True


FORMAT = Messages()
