"""Anthropic Messages calls served by chat completions (an `openai`, `azure` deployment, SPEC 3).

`system` becomes a system message; text and image blocks become parts; tool uses become tool
calls and tool results tool messages; `max_tokens`, `stop_sequences`, `temperature`, `top_p`,
tools and `tool_choice` map across; `metadata.user_id` becomes `user`. Replies and stream events
come back as Anthropic's message and events, finish reasons as stop reasons.

Two choices where chat has no exact counterpart, documented in docs/formats.md: `cache_control`
marks (on the request or its blocks) are accepted and left to the upstream's own automatic prompt
caching (they change the price, never the answer), and a tool result's `is_error` is said in its
text ("Error: ...").
"""

from __future__ import annotations

import json

from app.proxy.errors import ProxyError, anthropic_body
from app.proxy.formats import chat, messages
from app.proxy.formats.bridge import (
    Bridge,
    EventTranslator,
    FromChunks,
    check_fields,
    no_counterpart,
    sse,
    upstream_message,
)
from app.proxy.formats.format import Usage

API = "chat completions"
STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}
STOP["content_filter"] = "refusal"
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
MAPPED = {
    "model",
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "top_p",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
    "cache_control",  # a caching mark: left to the upstream's automatic prompt caching
}
DEFAULTS = {"service_tier": ("auto",), "thinking": ({"type": "disabled"},)}


def _text_of(blocks: object, where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    texts = []
    for j, block in enumerate(blocks if isinstance(blocks, list) else ()):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise no_counterpart(f"{where}[{j}].type={_kind(block)}", API)
        texts.append(str(block.get("text", "")))
    return "".join(texts)


def _kind(block: object) -> object:
    return block.get("type") if isinstance(block, dict) else type(block).__name__


def _image(block: dict, where: str) -> dict:
    source = block.get("source")
    if not isinstance(source, dict):
        raise ProxyError("invalid_request", f"{where}.source must be an object.", param=f"{where}.source")
    url: object
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = source.get("url")
    else:
        raise no_counterpart(f"{where}.source.type={source.get('type')}", API)
    return {"type": "image_url", "image_url": {"url": url}}


def _user(content: object, i: int) -> list[dict]:
    """A user turn: its tool results as tool messages first (chat wants them right after the
    assistant's calls), then the rest as one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results, parts = [], []
    for j, block in enumerate(content if isinstance(content, list) else ()):
        where, kind = f"messages[{i}].content[{j}]", _kind(block)
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append(_image(block, where))
        elif kind == "tool_result":
            if not isinstance(block.get("content"), str | list | None):
                raise ProxyError(
                    "invalid_request",
                    f"{where}.content must be text or text blocks.",
                    param=f"{where}.content",
                )
            text = _text_of(block.get("content") or "", f"{where}.content")
            if block.get("is_error"):
                text = f"Error: {text}"
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        else:
            raise no_counterpart(f"{where}.type={kind}", API)
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _assistant(content: object, i: int) -> dict:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts, calls = [], []
    for j, block in enumerate(content if isinstance(content, list) else ()):
        kind = _kind(block)
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {})
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
        else:
            raise no_counterpart(f"messages[{i}].content[{j}].type={kind}", API)
    message: dict = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: object) -> list[dict]:
    out = []
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            raise no_counterpart(f"tools[{i}].type={_kind(tool)}", API)
        function = {"name": tool.get("name"), "parameters": tool.get("input_schema") or {"type": "object"}}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: object, out: dict) -> None:
    if not isinstance(choice, dict):
        raise ProxyError("invalid_request", "tool_choice must be an object.", param="tool_choice")
    kind = choice.get("type")
    if isinstance(kind, str) and kind in TOOL_CHOICES:
        out["tool_choice"] = TOOL_CHOICES[kind]
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    else:
        raise no_counterpart(f"tool_choice.type={kind}", API)
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False


def to_chat(body: dict) -> dict:
    """Anthropic's Messages request as a chat completion request."""
    check_fields(body, MAPPED, DEFAULTS, API)
    turns: list[dict] = []
    if body.get("system") is not None:
        turns.append({"role": "system", "content": _text_of(body["system"], "system")})
    last = len(body["messages"]) - 1
    for i, message in enumerate(body["messages"]):
        content = message.get("content")
        if message["role"] == "assistant" and i == last:
            # Anthropic continues a final assistant turn (a prefill); chat would answer it anew.
            raise no_counterpart(f"messages[{i}] (a final assistant turn, which Anthropic continues)", API)
        turns.extend(_user(content, i) if message["role"] == "user" else [_assistant(content, i)])
    out: dict = {"model": body["model"], "messages": turns, "max_tokens": body["max_tokens"]}
    if body.get("stop_sequences") is not None:
        out["stop"] = body["stop_sequences"]
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], out)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or set(metadata) - {"user_id"}:
            raise no_counterpart("metadata", API)
        if metadata.get("user_id") is not None:
            out["user"] = metadata["user_id"]
    return out


def anthropic_usage(usage: Usage) -> dict:
    return {
        "input_tokens": usage.prompt - usage.cache_read - usage.cache_write,
        "output_tokens": usage.completion,
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation_input_tokens": usage.cache_write,
    }


def cached(usage: object) -> int:
    """OpenAI's cached prompt tokens (a part of prompt_tokens)."""
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    count = details.get("cached_tokens") if isinstance(details, dict) else None
    return count if isinstance(count, int) and count >= 0 else 0


def usage_with_cache(usage: object) -> Usage:
    counted = chat.usage_of(usage) or Usage(0, 0)
    return Usage(counted.prompt, counted.completion, min(cached(usage), counted.prompt))


def _message_id(upstream_id: object) -> str:
    return f"msg_{upstream_id}" if upstream_id else "msg_tollgate"


def to_message(data: dict) -> dict:
    """A chat completion as Anthropic's message."""
    choices = data.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    stop_reason = STOP.get(str(choice.get("finish_reason")), "end_turn")
    if message.get("refusal"):  # the model declined: its words, and Anthropic's reason for it
        content.append({"type": "text", "text": message["refusal"]})
        stop_reason = "refusal"
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _object(function),
            }
        )
    return {
        "id": _message_id(data.get("id")),
        "type": "message",
        "role": "assistant",
        "model": data.get("model"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": anthropic_usage(usage_with_cache(data.get("usage"))),
    }


def _object(function: dict) -> dict:
    """A tool call's arguments as the object Anthropic's `input` is; a model's malformed JSON is
    kept whole under `arguments` rather than lost."""
    raw = function.get("arguments") or "{}"
    try:
        value = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return {"arguments": raw}
    return value if isinstance(value, dict) else {"arguments": value}


class ToEvents(FromChunks):
    """Chat completion chunks as Anthropic's stream events."""

    def __init__(self) -> None:
        self.started = False
        self.block: str | None = None  # the open content block: "text", "tool_use" or None
        self.index = -1  # the open block's index
        self.tool: object = None  # the open tool_use block's tool call index in the chunks
        self.stop_reason = "end_turn"
        self.refused = False  # the model sent a refusal
        self.usage: object = None

    def chunk(self, data: dict) -> bytes:
        if isinstance(data.get("error"), dict):
            message = upstream_message(json.dumps(data).encode())
            return sse(anthropic_body(500, message), "error")
        if data.get("usage"):
            self.usage = data["usage"]
        choices = data.get("choices")
        if not self.started and not choices:
            return b""  # Azure's first chunk: no id, no model, only its prompt filter's results
        out = [] if self.started else [self._start(data)]
        self.started = True
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            self.refused = self.refused or bool(delta.get("refusal"))
            if isinstance(text, str) and text:
                out.append(self._open("text", {"type": "text", "text": ""}))
                out.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                out.append(self._tool_delta(call))
            if choice.get("finish_reason"):
                self.stop_reason = STOP.get(str(choice["finish_reason"]), "end_turn")
        return b"".join(out)

    def _start(self, data: dict) -> bytes:
        message: dict[str, object] = {
            "id": _message_id(data.get("id")),
            "type": "message",
            "role": "assistant",
            "model": data.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return sse({"type": "message_start", "message": message}, "message_start")

    def _open(self, kind: str, block: dict) -> bytes:
        if self.block == kind and kind == "text":
            return b""
        out = self._close()
        self.block, self.index = kind, self.index + 1
        start = {"type": "content_block_start", "index": self.index, "content_block": block}
        return out + sse(start, "content_block_start")

    def _close(self) -> bytes:
        if self.block is None:
            return b""
        self.block = None
        return sse({"type": "content_block_stop", "index": self.index}, "content_block_stop")

    def _delta(self, delta: dict) -> bytes:
        return sse(
            {"type": "content_block_delta", "index": self.index, "delta": delta}, "content_block_delta"
        )

    def _tool_delta(self, call: object) -> bytes:
        if not isinstance(call, dict):
            return b""
        function = call.get("function") or {}
        out = b""
        position = call.get("index", 0)
        if call.get("id") and (self.block != "tool_use" or position != self.tool):  # a new call
            block = {"type": "tool_use", "id": call["id"], "name": function.get("name"), "input": {}}
            out = self._open("tool_use", block)
            self.tool = position
        if function.get("arguments") and self.block == "tool_use":
            out += self._delta({"type": "input_json_delta", "partial_json": function["arguments"]})
        return out

    def finish(self) -> bytes:
        out = self._close() if self.started else self._start({})
        delta = {"stop_reason": "refusal" if self.refused else self.stop_reason, "stop_sequence": None}
        usage = anthropic_usage(usage_with_cache(self.usage))
        out += sse({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta")
        return out + sse({"type": "message_stop"}, "message_stop")


class MessagesOverChat(Bridge):
    client = messages.FORMAT
    upstream = chat.FORMAT

    def request(self, body: dict, completion: int) -> dict:
        return to_chat(body)

    def reply(self, data: dict) -> dict:
        return to_message(data)

    def error(self, status: int, raw: bytes) -> bytes:
        return json.dumps(anthropic_body(status, upstream_message(raw))).encode()

    def events(self, wants_usage: bool) -> EventTranslator:
        return ToEvents()


BRIDGE = MessagesOverChat()
