"""The built-in `mock` provider: a deterministic model for demos and load tests, no vendor key. It
speaks every format the proxy takes (chat completions, embeddings, Anthropic's Messages, OpenAI's
Responses), JSON and streams, with usage that counts its words exactly."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from app.metering.estimate import COMPLETION_FIELDS, chat_prompt, embedding_input
from app.proxy.providers.deployment import DeploymentInfo, Provider
from app.upstream.client import Client, Reply

DEFAULT_COMPLETION = 24
WORDS = (
    "Hello",
    "from",
    "Tollgate's",
    "mock",
    "model.",
    "Every",
    "word",
    "is",
    "one",
    "token,",
    "and",
    "the",
    "usage",
    "block",
    "counts",
    "them",
    "exactly.",
)


def _text(n: int) -> list[str]:
    return [WORDS[i % len(WORDS)] for i in range(n)]


def _limit(body: dict) -> int:
    """The mock's answer is DEFAULT_COMPLETION words, cut short by the smallest completion limit."""
    limits = [body.get(name) for name in COMPLETION_FIELDS]
    return max(0, min([DEFAULT_COMPLETION, *(v for v in limits if isinstance(v, int))]))


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def answer(client: Client, d: DeploymentInfo, fmt: str, body: dict, stream: bool) -> Reply:
    """The mock's reply, made here: no connection, no key."""
    if fmt == "embeddings":
        return _json(_embeddings(body))
    if fmt == "messages":
        return (
            Reply(200, "text/event-stream", chunks=_message_events(body)) if stream else _json(_message(body))
        )
    if fmt == "responses":
        return (
            Reply(200, "text/event-stream", chunks=_response_events(body))
            if stream
            else _json(_response(body))
        )
    if stream:
        return Reply(200, "text/event-stream", chunks=_stream(body))
    return _json(_completion(body))


def _json(body: dict) -> Reply:
    return Reply(200, "application/json", body=json.dumps(body).encode())


def _sse(data: dict) -> bytes:
    kind = data["type"]
    return f"event: {kind}\ndata: ".encode() + json.dumps(data).encode() + b"\n\n"


def _message(body: dict) -> dict:
    """Anthropic's message: max_tokens is its only completion limit."""
    limit = min(DEFAULT_COMPLETION, body.get("max_tokens") or DEFAULT_COMPLETION)
    usage = {"input_tokens": chat_prompt(body).likely, "output_tokens": limit}
    return {
        "id": f"msg_mock_{time.time_ns()}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "mock"),
        "content": [{"type": "text", "text": " ".join(_text(limit))}],
        "stop_reason": "max_tokens" if limit < DEFAULT_COMPLETION else "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def _message_events(body: dict) -> Iterator[bytes]:
    message = _message(body)
    words, usage = _text(message["usage"]["output_tokens"]), message["usage"]
    start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
    yield _sse({"type": "message_start", "message": start})
    yield _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    for i, word in enumerate(words):
        delta = {"type": "text_delta", "text": word if i == 0 else " " + word}
        yield _sse({"type": "content_block_delta", "index": 0, "delta": delta})
    yield _sse({"type": "content_block_stop", "index": 0})
    ending = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield _sse({"type": "message_delta", "delta": ending, "usage": {"output_tokens": len(words)}})
    yield _sse({"type": "message_stop"})


def _response(body: dict) -> dict:
    """OpenAI's response: max_output_tokens is its completion limit."""
    limit = min(DEFAULT_COMPLETION, body.get("max_output_tokens") or DEFAULT_COMPLETION)
    items = body.get("input")
    messages = [{"content": items}] if isinstance(items, str) else items
    prompt = chat_prompt({"instructions": body.get("instructions"), "messages": messages}).likely
    part = {"type": "output_text", "text": " ".join(_text(limit)), "annotations": []}
    item = {
        "type": "message",
        "id": "msg_mock",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    status = "incomplete" if limit < DEFAULT_COMPLETION else "completed"
    return {
        "id": f"resp_mock_{time.time_ns()}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": body.get("model", "mock"),
        "output": [item],
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": limit,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + limit,
        },
    }


def _response_events(body: dict) -> Iterator[bytes]:
    """The Responses API's events, as OpenAI sends them (the SDK's stream helper checks each)."""
    response = _response(body)
    item, part = response["output"][0], response["output"][0]["content"][0]
    started = dict(response, status="in_progress", output=[], usage=None, incomplete_details=None)
    ids = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    events: list[dict] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": dict(item, status="in_progress", content=[]),
        },
        dict(ids, type="response.content_part.added", part=dict(part, text="")),
    ]
    words = _text(response["usage"]["output_tokens"])
    events += [
        dict(ids, type="response.output_text.delta", delta=word if i == 0 else " " + word)
        for i, word in enumerate(words)
    ]
    events += [
        dict(ids, type="response.output_text.done", text=part["text"]),
        dict(ids, type="response.content_part.done", part=part),
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": f"response.{response['status']}", "response": response},
    ]
    for number, event in enumerate(events):
        yield _sse(dict(event, sequence_number=number))


def _completion(body: dict) -> dict:
    limit = _limit(body)
    words = _text(limit)
    prompt = chat_prompt(body).likely
    return {
        "id": f"chatcmpl-mock-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "mock"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(words)},
                "finish_reason": "length" if limit < DEFAULT_COMPLETION else "stop",
            }
        ],
        "usage": _usage(prompt, len(words)),
    }


def _stream(body: dict) -> Iterator[bytes]:
    limit = _limit(body)
    prompt = chat_prompt(body).likely
    base = {
        "id": f"chatcmpl-mock-{time.time_ns()}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "mock"),
    }

    def event(choices: list, usage: dict | None = None) -> bytes:
        payload = dict(base, choices=choices)
        if usage is not None:
            payload["usage"] = usage
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    for i, word in enumerate(_text(limit)):
        yield event(
            [{"index": 0, "delta": {"content": word if i == 0 else " " + word}, "finish_reason": None}]
        )
    yield event(
        [{"index": 0, "delta": {}, "finish_reason": "length" if limit < DEFAULT_COMPLETION else "stop"}]
    )
    if (body.get("stream_options") or {}).get("include_usage"):
        yield event([], _usage(prompt, limit))
    yield b"data: [DONE]\n\n"


def _embeddings(body: dict) -> dict:
    raw = body.get("input")
    items = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    prompt = embedding_input(body).likely
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": [round(((i + 1) * (k + 1)) % 7 / 7, 4) for k in range(8)],
        }
        for i in range(len(items))
    ]
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", "mock"),
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }


PROVIDER = Provider("mock", frozenset(("chat", "embeddings", "messages", "responses")), "chat", answer)
