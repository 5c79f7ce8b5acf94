"""Chat completions served by Anthropic's Messages API (an `anthropic` deployment, SPEC 3).

System messages become `system`; text and image parts, tool calls and tool results become content
blocks; `max_tokens`, `stop`, `temperature`, `top_p`, tools and `tool_choice` map across; `user`
becomes `metadata.user_id`. Replies and stream events come back as chat completions and chunks,
stop reasons as finish reasons, Anthropic's cache reads as `prompt_tokens_details.cached_tokens`.
"""

from __future__ import annotations

import json
import time

from app.metering.estimate import COMPLETION_FIELDS
from app.proxy.errors import ProxyError
from app.proxy.formats import chat, messages
from app.proxy.formats.bridge import (
    Bridge,
    EventTranslator,
    check_fields,
    no_counterpart,
    openai_error,
    sse,
)
from app.proxy.formats.format import Usage, data_of

API = "Anthropic's Messages API"
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
# Fields taken across (or ours: stream_options, whose usage Anthropic's stream always carries).
MAPPED = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "stop",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
    "metadata",
    *COMPLETION_FIELDS,
}
# Fields that may come at a value meaning "as by default": accepted then, refused otherwise.
DEFAULTS = {
    "n": (1,),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logprobs": (False,),
    "store": (False,),
    "service_tier": ("auto",),
    "response_format": ({"type": "text"},),
    "modalities": (["text"],),
    "logit_bias": ({},),
    "seed": (),
    "top_logprobs": (),
}


def _text(content: object, where: str) -> str:
    """A system or tool message's content: a string, or text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise ProxyError("invalid_request", f"{where} must be text for {API}.", param=where)


def _image(part: dict, where: str) -> dict:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if isinstance(image, dict) and image.get("detail") not in (None, "auto"):
        raise no_counterpart(f"{where}.image_url.detail", API)
    if not isinstance(url, str):
        raise ProxyError("invalid_request", f"{where}.image_url.url must be a string.", param=where)
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        media_type = head[5:].split(";")[0]
        if not head.endswith(";base64") or not data:
            raise ProxyError("invalid_request", f"{where}: a data URL must be base64.", param=where)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _user_blocks(content: object, i: int) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for j, part in enumerate(content if isinstance(content, list) else ()):
        where = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            blocks.append(_image(part, where))
        else:
            raise no_counterpart(f"{where}.type={kind}", API)
    return blocks


def _assistant_blocks(message: dict, i: int) -> list[dict]:
    for name in ("function_call", "refusal", "audio", "name"):
        if message.get(name) is not None:
            raise no_counterpart(f"messages[{i}].{name}", API)
    content = message.get("content")
    blocks: list[dict[str, object]] = (
        [] if content in (None, "") else [{"type": "text", "text": _text(content, f"messages[{i}].content")}]
    )
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ProxyError(
            "invalid_request", f"messages[{i}].tool_calls must be a list.", param=f"messages[{i}].tool_calls"
        )
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            raise no_counterpart(f"messages[{i}].tool_calls[{j}].type", API)
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (ValueError, TypeError, RecursionError) as exc:
            raise ProxyError(
                "invalid_request",
                f"messages[{i}].tool_calls[{j}].function.arguments must be a JSON object.",
                param=f"messages[{i}].tool_calls[{j}].function.arguments",
            ) from exc
        blocks.append(
            {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments}
        )
    return blocks


def _turns(chat_messages: list[dict]) -> tuple[list[str], list[dict]]:
    """(system texts, Anthropic turns); consecutive turns of one role are merged, as the API wants."""
    system: list[str] = []
    turns: list[dict] = []
    for i, message in enumerate(chat_messages):
        role = message["role"]
        if role in ("system", "developer"):
            system.append(_text(message.get("content"), f"messages[{i}].content"))
            continue
        if role == "user":
            if message.get("name") is not None:
                raise no_counterpart(f"messages[{i}].name", API)
            blocks = _user_blocks(message.get("content"), i)
        elif role == "assistant":
            blocks = _assistant_blocks(message, i)
        elif role == "tool":
            role = "user"
            result = _text(message.get("content"), f"messages[{i}].content")
            blocks = [{"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": result}]
        else:
            raise no_counterpart(f"messages[{i}].role={role}", API)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _tools(tools: object) -> list[dict]:
    if not isinstance(tools, list):
        raise ProxyError("invalid_request", "tools must be a list.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            raise no_counterpart(f"tools[{i}].type", API)
        if function.get("strict"):
            raise no_counterpart(f"tools[{i}].function.strict", API)
        spec = {
            "name": function.get("name"),
            "input_schema": function.get("parameters") or {"type": "object"},
        }
        if function.get("description") is not None:
            spec["description"] = function["description"]
        out.append(spec)
    return out


def _tool_choice(body: dict) -> dict[str, object] | None:
    choice = body.get("tool_choice")
    out: dict[str, object] | None
    if choice is None:
        out = None
    elif isinstance(choice, str) and choice in TOOL_CHOICES:
        out = dict(TOOL_CHOICES[choice])
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise no_counterpart("tool_choice", API)
    if body.get("parallel_tool_calls") is False:
        out = out or {"type": "auto"}
        if out["type"] != "none":
            out["disable_parallel_tool_use"] = True
    return out


def _metadata(body: dict) -> dict | None:
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
        raise no_counterpart("metadata", API)
    user = next(
        (body[name] for name in ("user", "safety_identifier") if body.get(name) is not None),
        (metadata or {}).get("user_id"),
    )
    return {"user_id": user} if user is not None else None


def to_messages(body: dict, completion: int) -> dict:
    """A chat completion request as Anthropic's Messages request."""
    check_fields(body, MAPPED, DEFAULTS, API)
    system, turns = _turns(body["messages"])
    limits = [body[name] for name in COMPLETION_FIELDS if isinstance(body.get(name), int)]
    out: dict = {"model": body["model"], "max_tokens": min(limits) if limits else max(1, completion)}
    if system:
        out["system"] = "\n\n".join(system)
    out["messages"] = turns
    stop = body.get("stop")
    if stop is not None:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    choice, metadata = _tool_choice(body), _metadata(body)
    if choice is not None:
        out["tool_choice"] = choice
    if metadata is not None:
        out["metadata"] = metadata
    return out


def chat_usage(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.prompt,
        "completion_tokens": usage.completion,
        "total_tokens": usage.prompt + usage.completion,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read, "cache_write_tokens": usage.cache_write},
        # LiteLLM's names for Anthropic's cache counts, for clients that read them there
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation_input_tokens": usage.cache_write,
    }


def to_completion(data: dict) -> dict:
    """Anthropic's message as a chat completion."""
    blocks = [b for b in data.get("content") or () if isinstance(b, dict)]
    text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    calls = [
        {
            "id": b.get("id"),
            "type": "function",
            "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})},
        }
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    message: dict = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    usage = messages.usage_of(data.get("usage")) or Usage(0, 0)
    return {
        "id": data.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": FINISH.get(str(data.get("stop_reason")), "stop"),
            }
        ],
        "usage": chat_usage(usage),
    }


class ToChunks(EventTranslator):
    """Anthropic's stream events as chat completion chunks."""

    def __init__(self, wants_usage: bool) -> None:
        self.wants_usage = wants_usage
        self.id, self.model, self.created = "", "", int(time.time())
        self.tools: dict[object, int] = {}  # Anthropic's block index -> the tool call's index
        self.usage: Usage | None = None

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk: dict = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if self.wants_usage:
            chunk["usage"] = None
        return sse(chunk)

    def feed(self, events: list[bytes]) -> bytes:
        return b"".join(self._one(data) for data in map(data_of, events) if isinstance(data, dict))

    def _one(self, data: dict) -> bytes:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.id, self.model = str(message.get("id", "")), str(message.get("model", ""))
            self.usage = messages.usage_of(message.get("usage"))
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "message_delta":
            self.usage = messages.usage_of(data.get("usage"), self.usage) or self.usage
            reason = (data.get("delta") or {}).get("stop_reason")
            return self._chunk({}, FINISH.get(str(reason), "stop"))
        if kind == "message_stop":
            tail = b""
            if self.wants_usage:
                usage = chat_usage(self.usage or Usage(0, 0))
                last = {"id": self.id, "object": "chat.completion.chunk", "created": self.created}
                tail = sse(dict(last, model=self.model, choices=[], usage=usage))
            return tail + b"data: [DONE]\n\n"
        if kind == "error":
            error = data.get("error") or {}
            return sse({"error": {"message": error.get("message"), "type": error.get("type"), "code": None}})
        return b""  # ping, content_block_stop

    def _block_start(self, data: dict) -> bytes:
        block = data.get("content_block") or {}
        if block.get("type") != "tool_use":
            return b""
        index = self.tools[data.get("index")] = len(self.tools)
        call = {"index": index, "id": block.get("id"), "type": "function"}
        call["function"] = {"name": block.get("name"), "arguments": ""}
        return self._chunk({"tool_calls": [call]})

    def _delta(self, data: dict) -> bytes:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta":
            return self._chunk({"content": delta.get("text", "")})
        if delta.get("type") == "input_json_delta" and data.get("index") in self.tools:
            call = {
                "index": self.tools[data.get("index")],
                "function": {"arguments": delta.get("partial_json", "")},
            }
            return self._chunk({"tool_calls": [call]})
        return b""


class ChatOverMessages(Bridge):
    client = chat.FORMAT
    upstream = messages.FORMAT

    def request(self, body: dict, completion: int) -> dict:
        return to_messages(body, completion)

    def reply(self, data: dict) -> dict:
        return to_completion(data)

    def error(self, status: int, raw: bytes) -> bytes:
        return openai_error(raw)

    def events(self, wants_usage: bool) -> EventTranslator:
        return ToChunks(wants_usage)


BRIDGE = ChatOverMessages()
