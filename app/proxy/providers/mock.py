"""The built-in `mock` provider: a deterministic model for demos and load tests, no vendor key."""

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
        return Reply(200, "application/json", body=json.dumps(_embeddings(body)).encode())
    if stream:
        return Reply(200, "text/event-stream", chunks=_stream(body))
    return Reply(200, "application/json", body=json.dumps(_completion(body)).encode())


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


PROVIDER = Provider("mock", frozenset(("chat", "embeddings")), "chat", answer)
