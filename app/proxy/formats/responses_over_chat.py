"""Responses calls served by chat completions (SPEC 3): for deployments that do not speak the
Responses API (azure, and through chat an anthropic one).

`instructions` becomes a system message; message items, their text and image parts, function
calls and their outputs become chat messages; function tools, `tool_choice`, `text.format`,
`max_output_tokens`, `temperature`, `top_p` and `safety_identifier`/`user` map across. Replies and
stream events come back as a response and its events (`response.created` ... `response.completed`).
"""

from __future__ import annotations

import json
import time

from app.proxy.errors import ProxyError
from app.proxy.formats import chat, responses
from app.proxy.formats.bridge import (
    Bridge,
    EventTranslator,
    FromChunks,
    check_fields,
    no_counterpart,
    openai_error,
    sse,
    upstream_message,
)
from app.proxy.formats.format import Usage
from app.proxy.formats.messages_over_chat import cached

API = "chat completions"
MAPPED = {
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "store",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
    "text",
}
DEFAULTS = {"truncation": ("disabled",), "include": ([],), "service_tier": ("auto",), "metadata": ({},)}
ROLES = ("user", "system", "developer", "assistant")


def _content(content: object, where: str) -> object:
    if isinstance(content, str):
        return content
    parts = []
    for j, part in enumerate(content if isinstance(content, list) else ()):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"]}
            if part.get("detail") not in (None, "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise no_counterpart(f"{where}[{j}].type={kind}", API)
    return parts


def _text_only(content: object) -> object:
    """An assistant's or system's parts as the plain text chat takes for them."""
    if isinstance(content, list) and all(p.get("type") == "text" for p in content):
        return "".join(p["text"] for p in content)
    return content


def _messages(body: dict) -> list[dict]:
    items = body["input"] if isinstance(body["input"], list) else [{"role": "user", "content": body["input"]}]
    out: list[dict] = []
    if body.get("instructions"):
        out.append({"role": "system", "content": body["instructions"]})
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") in ROLES:
            content = _content(item.get("content"), f"input[{i}].content")
            role = item["role"]
            out.append({"role": role, "content": content if role == "user" else _text_only(content)})
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function"}
            call["function"] = {"name": item.get("name"), "arguments": item.get("arguments") or "{}"}
            if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls") is not None:
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        else:
            raise no_counterpart(f"input[{i}].type={kind}", API)
    return out


def _tools(tools: object) -> list[dict]:
    out = []
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise no_counterpart(
                f"tools[{i}].type={tool.get('type') if isinstance(tool, dict) else tool}", API
            )
        function = {
            k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None
        }
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: object) -> object:
    if isinstance(choice, str) and choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise no_counterpart("tool_choice", API)


def _response_format(text: object) -> dict | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(text, dict) or set(text) - {"format"}:
        raise no_counterpart("text", API)
    if fmt is not None and not isinstance(fmt, dict):
        raise ProxyError("invalid_request", "text.format must be an object.", param="text.format")
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise no_counterpart("text.format", API)


def to_chat(body: dict, completion: int) -> dict:
    """A Responses request as a chat completion request."""
    check_fields(body, MAPPED, DEFAULTS, API)
    out: dict = {"model": body["model"], "messages": _messages(body)}
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "stream", "parallel_tool_calls"):
        if body.get(name) is not None:
            out[name] = body[name]
    user = body.get("user") if body.get("user") is not None else body.get("safety_identifier")
    if user is not None:
        out["user"] = user
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("text") is not None:
        response_format = _response_format(body["text"])
        if response_format is not None:
            out["response_format"] = response_format
    return out


def responses_usage(usage: Usage) -> dict:
    return {
        "input_tokens": usage.prompt,
        "input_tokens_details": {"cached_tokens": usage.cache_read},
        "output_tokens": usage.completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.prompt + usage.completion,
    }


def usage_with_cache(usage: object) -> Usage:
    counted = chat.usage_of(usage) or Usage(0, 0)
    read = min(cached(usage), counted.prompt)
    # LiteLLM's name for the cache writes a chat reply translated from Anthropic's carries.
    written = usage.get("cache_creation_input_tokens") if isinstance(usage, dict) else None
    written = written if isinstance(written, int) and 0 <= written <= counted.prompt - read else 0
    return Usage(counted.prompt, counted.completion, read, written)


# A chat finish reason that leaves a response incomplete, and the reason the Responses API gives.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _shell(
    response_id: str,
    model: object,
    output: list,
    usage: dict | None,
    finish: object = None,
    done: bool = True,
) -> dict:
    reason = INCOMPLETE.get(str(finish))
    status = "in_progress" if not done else "incomplete" if reason else "completed"
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output,
        "usage": usage,
        "error": None,
        "incomplete_details": {"reason": reason} if done and reason else None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "store": False,
    }


def _text_item(item_id: str, text: str, status: str = "completed") -> dict:
    part = {"type": "output_text", "text": text, "annotations": []}
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": [part]}


def _call_item(call: dict, status: str = "completed") -> dict:
    function = call.get("function") or {}
    return {
        "type": "function_call",
        "id": f"fc_{call.get('id')}",
        "call_id": call.get("id"),
        "name": function.get("name"),
        "arguments": function.get("arguments") or "",
        "status": status,
    }


def to_response(data: dict) -> dict:
    """A chat completion as a response."""
    choices = data.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    base = str(data.get("id") or "tollgate")
    output: list[dict] = []
    if message.get("content"):
        output.append(_text_item(f"msg_{base}", str(message["content"])))
    output.extend(_call_item(call) for call in message.get("tool_calls") or () if isinstance(call, dict))
    usage = responses_usage(usage_with_cache(data.get("usage")))
    return _shell(f"resp_{base}", data.get("model"), output, usage, choice.get("finish_reason"))


class ToResponseEvents(FromChunks):
    """Chat completion chunks as the Responses API's stream events."""

    def __init__(self) -> None:
        self.sequence = 0
        self.id, self.model = "resp_tollgate", None
        self.started = False
        self.text: str | None = None  # the message item's text, once one is open
        self.calls: dict[int, dict] = {}  # chat's tool call index -> its call, arguments so far
        self.finish_reason: str | None = None
        self.usage: object = None

    def _event(self, kind: str, **fields: object) -> bytes:
        self.sequence += 1
        return sse({"type": kind, "sequence_number": self.sequence - 1, **fields}, kind)

    def chunk(self, data: dict) -> bytes:
        if isinstance(data.get("error"), dict):
            error = {"code": "server_error", "message": upstream_message(json.dumps(data).encode())}
            return self._event("error", **error)
        if data.get("usage"):
            self.usage = data["usage"]
        if not self.started and not data.get("choices"):
            return b""  # Azure's first chunk: no id, no model, only its prompt filter's results
        out = [b""] if self.started else [self._start(data)]
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out.append(self._text_delta(str(delta["content"])))
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    out.append(self._call_delta(call))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return b"".join(out)

    def _start(self, data: dict) -> bytes:
        self.started = True
        self.id, self.model = f"resp_{data.get('id') or 'tollgate'}", data.get("model")
        shell = _shell(self.id, self.model, [], None, done=False)
        return self._event("response.created", response=shell) + self._event(
            "response.in_progress", response=shell
        )

    def _message_id(self) -> str:
        return "msg_" + self.id.removeprefix("resp_")

    def _text_delta(self, text: str) -> bytes:
        out = b""
        if self.text is None:
            self.text = ""
            item = _text_item(self._message_id(), "", "in_progress")
            item["content"] = []
            out += self._event("response.output_item.added", output_index=0, item=item)
            part = {"type": "output_text", "text": "", "annotations": []}
            out += self._event(
                "response.content_part.added",
                item_id=self._message_id(),
                output_index=0,
                content_index=0,
                part=part,
            )
        self.text += text
        return out + self._event(
            "response.output_text.delta",
            item_id=self._message_id(),
            output_index=0,
            content_index=0,
            delta=text,
        )

    def _index(self, position: int) -> int:
        return position + (1 if self.text is not None else 0)

    def _call_delta(self, call: dict) -> bytes:
        position = call.get("index", 0)
        function = call.get("function") or {}
        out = b""
        if position not in self.calls:
            self.calls[position] = {
                "id": call.get("id"),
                "function": {"name": function.get("name"), "arguments": ""},
            }
            item = _call_item(self.calls[position], "in_progress")
            out += self._event("response.output_item.added", output_index=self._index(position), item=item)
        known = self.calls[position]
        if function.get("arguments"):
            known["function"]["arguments"] += function["arguments"]
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=f"fc_{known['id']}",
                output_index=self._index(position),
                delta=function["arguments"],
            )
        return out

    def finish(self) -> bytes:
        out = b"" if self.started else self._start({})
        output = []
        if self.text is not None:
            item = _text_item(self._message_id(), self.text)
            part = item["content"][0]
            ids = {"item_id": self._message_id(), "output_index": 0, "content_index": 0}
            out += self._event("response.output_text.done", **ids, text=self.text)
            out += self._event("response.content_part.done", **ids, part=part)
            out += self._event("response.output_item.done", output_index=0, item=item)
            output.append(item)
        for position, call in sorted(self.calls.items()):
            item = _call_item(call)
            index = self._index(position)
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
            out += self._event("response.output_item.done", output_index=index, item=item)
            output.append(item)
        usage = responses_usage(usage_with_cache(self.usage))
        shell = _shell(self.id, self.model, output, usage, self.finish_reason)
        return out + self._event(f"response.{shell['status']}", response=shell)


class ResponsesOverChat(Bridge):
    client = responses.FORMAT
    upstream = chat.FORMAT

    def request(self, body: dict, completion: int) -> dict:
        return to_chat(body, completion)

    def reply(self, data: dict) -> dict:
        return to_response(data)

    def error(self, status: int, raw: bytes) -> bytes:
        return openai_error(raw)

    def events(self, wants_usage: bool) -> EventTranslator:
        return ToResponseEvents()


BRIDGE = ResponsesOverChat()
