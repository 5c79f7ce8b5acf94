"""Token estimates from a request body, made before the upstream has said anything.

`upper` errs high: it sizes reservations, so that a prepaid balance cannot be overdrawn. It covers
the whole body as it will be forwarded (SPEC 5.2): every key and value, tools and their schemas,
`response_format`, whatever a provider may render into the prompt, not only the messages' text.
Only the settings no provider tokenizes are left out: top-level numbers and flags, `model`, `user`
and `stream_options` (what Tollgate itself adds or rewrites is among them).
`likely` is the best guess: it is charged when a client hangs up before the upstream's usage arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Byte-level BPE tokenizers rarely give more than one token per two bytes of UTF-8 text; real
# text averages about four bytes a token. Message framing costs a few tokens per message.
PER_MESSAGE = 4
PER_REQUEST = 3
# Top-level settings that are never part of the prompt, when they hold what they should.
SETTINGS = frozenset(("model", "user", "stream_options"))
# An image part is counted at its documented cost, not its bytes (a base64 image is megabytes):
# the most any of OpenAI's tile or patch schemes (gpt-4o 1,445; gpt-4.1-mini 2,489; o4-mini 2,642)
# or Anthropic's (~1,600) charges for one image. Above it, settlement charges what the balance
# still has and records the rest as unbilled (SPEC 5.2).
PER_IMAGE = 3000
IMAGE_TYPES = ("image_url", "input_image", "image")
DIGITS = b"0123456789"
# Every field a server may take as the completion limit: OpenAI's two, llama.cpp's n_predict (which
# it reads before max_tokens) and TGI's max_new_tokens. Each one present is capped (SPEC 5.2).
COMPLETION_FIELDS = ("max_tokens", "max_completion_tokens", "n_predict", "max_new_tokens")


@dataclass(frozen=True)
class PromptEstimate:
    upper: int
    likely: int


def _size(value: object) -> tuple[int, int]:
    """(UTF-8 bytes, ASCII digits) of value as compact JSON: keys, values and punctuation, as a
    provider may count them. Digits are counted apart: Llama's and Qwen's tokenizers make every
    digit a token of its own, twice the density the byte rule assumes."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # surrogatepass: a lone surrogate ("\ud800" in the client's JSON) is still three bytes, not a 500.
    data = text.encode("utf-8", "surrogatepass")
    return len(data), len(data) - len(data.translate(None, DIGITS))


def _prompt_part(body: dict) -> tuple[dict, int]:
    """The body less its settings (top-level scalars; `model`, `user`, `stream_options`) and less
    its images, and how many images it had: they count PER_IMAGE each, not their bytes."""
    part = {
        name: value
        for name, value in body.items()
        if not (value is None or isinstance(value, int | float) or (name in SETTINGS and _setting(value)))
    }
    messages = part.get("messages")
    if not isinstance(messages, list):
        return part, 0
    images, kept = 0, []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(_is_image(p) for p in content):
            shown = [p for p in content if not _is_image(p)]
            images += len(content) - len(shown)
            message = dict(message, content=shown)
        kept.append(message)
    return (dict(part, messages=kept), images) if images else (part, 0)


def _setting(value: object) -> bool:
    return (isinstance(value, str) and len(value) <= 256) or (
        isinstance(value, dict) and all(isinstance(v, bool) for v in value.values())
    )


def _is_image(part: object) -> bool:
    return isinstance(part, dict) and part.get("type") in IMAGE_TYPES


def _from_bytes(size: tuple[int, int], images: int, framing: int) -> PromptEstimate:
    """Upper: two bytes a token, a digit a token; likely: four bytes a token, a digit a token."""
    total, digits = size
    return PromptEstimate(
        upper=-(-(total + digits) // 2) + images * PER_IMAGE + framing,
        likely=-(-(total - digits) // 4) + digits + images * PER_IMAGE + framing,
    )


def chat_prompt(body: dict) -> PromptEstimate:
    """The whole body but its settings, images at PER_IMAGE each, plus message framing."""
    part, images = _prompt_part(body)
    messages = body.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    return _from_bytes(_size(part), images, PER_MESSAGE * count + PER_REQUEST)


def embedding_input(body: dict) -> PromptEstimate:
    """Embeddings count their input: text by its bytes, pre-tokenised input one token per integer."""
    raw = body.get("input")
    items = raw if isinstance(raw, list) else [raw]
    sizes = [_size(item) for item in items if isinstance(item, str)]
    size = (sum(total for total, _ in sizes), sum(digits for _, digits in sizes))
    tokens = sum(_pretokenised(item) for item in items)
    estimate = _from_bytes(size, 0, len(items))
    return PromptEstimate(estimate.upper + tokens, estimate.likely + tokens)


def _pretokenised(item: object) -> int:
    if isinstance(item, list):
        return len(item)
    return 1 if isinstance(item, int) and not isinstance(item, bool) else 0


def completion_request(body: dict) -> int | None:
    """The completion tokens a chat call may produce (SPEC 5.1): the larger of its limit fields,
    times `n` choices; None when it gives no limit (the tier's default reserve applies)."""
    limits = [v for v in (body.get(name) for name in COMPLETION_FIELDS) if isinstance(v, int)]
    return max(limits) * choices(body) if limits else None


def choices(body: dict) -> int:
    """How many completions a chat call asks for (`n`): each needs at least one token."""
    n = body.get("n")
    return n if isinstance(n, int) and n > 1 else 1
