"""Token estimates from a request body, made before the upstream has said anything.

`upper` errs high: it sizes reservations, so that a prepaid balance cannot be overdrawn.
`likely` is the best guess: it is charged when a client hangs up before the upstream's usage arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

# Byte-level BPE tokenizers rarely give more than one token per two bytes of UTF-8 text; real
# text averages about four bytes a token. Message framing costs a few tokens per message.
PER_MESSAGE = 4
PER_REQUEST = 3
PER_IMAGE = 1500


@dataclass(frozen=True)
class PromptEstimate:
    upper: int
    likely: int


def _text_bytes(value: object) -> tuple[int, int]:
    """(UTF-8 bytes of every string inside value, number of image parts)."""
    if isinstance(value, str):
        return len(value.encode()), 0
    if isinstance(value, dict):
        if value.get("type") in ("image_url", "input_image", "image"):
            return 0, 1
        total, images = 0, 0
        for item in value.values():
            b, i = _text_bytes(item)
            total, images = total + b, images + i
        return total, images
    if isinstance(value, list):
        total, images = 0, 0
        for item in value:
            b, i = _text_bytes(item)
            total, images = total + b, images + i
        return total, images
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 1, 0  # a pre-tokenised input carries one token per integer
    return 0, 0


def _from_bytes(size: int, images: int, framing: int) -> PromptEstimate:
    return PromptEstimate(
        upper=-(-size // 2) + images * PER_IMAGE + framing,
        likely=-(-size // 4) + images * PER_IMAGE + framing,
    )


def chat_prompt(body: dict) -> PromptEstimate:
    messages = body.get("messages") or []
    size, images = _text_bytes(messages)
    for extra in ("tools", "functions", "response_format"):
        if extra in body:
            b, _ = _text_bytes(body[extra])
            size += b
    return _from_bytes(size, images, PER_MESSAGE * len(messages) + PER_REQUEST)


def embedding_input(body: dict) -> PromptEstimate:
    raw = body.get("input")
    size, _ = _text_bytes(raw)
    count = len(raw) if isinstance(raw, list) else 1
    return _from_bytes(size, 0, count)


def completion_request(body: dict) -> tuple[str | None, int | None]:
    """Which completion-limit field the client used, and its value."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            return name, value
    return None, None
