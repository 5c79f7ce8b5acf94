"""CPU of the per-call body work the proxy does before forwarding: the prompt estimate over the
whole body, and the JSON nesting check before parsing (issue 17). Run: `.venv/bin/python -m bench.estimate`.

Prints microseconds per call for bodies from the bench's own one-line chat to a 200 KB tools body
and a 1 MB image; compare with `make bench`'s gateway CPU per call (about 1,500 µs).
"""

from __future__ import annotations

import json
import random
import string
import timeit

from app import nesting
from app.metering import estimate


def _tools(count: int, properties: int) -> list[dict]:
    rng = random.Random(7)

    def word() -> str:
        return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 12)))

    return [
        {
            "type": "function",
            "function": {
                "name": word(),
                "description": " ".join(word() for _ in range(20)),
                "parameters": {
                    "type": "object",
                    "properties": {
                        word(): {"type": "string", "description": " ".join(word() for _ in range(8))}
                        for _ in range(properties)
                    },
                },
            },
        }
        for _ in range(count)
    ]


def bodies() -> dict[str, dict]:
    chat = {"model": "m", "user": "cust-1", "max_tokens": 16}
    hello = [{"role": "user", "content": "Say hello."}]
    conversation = [{"role": "user" if i % 2 else "assistant", "content": "word " * 60} for i in range(20)]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 1_000_000}}
    with_image = [{"role": "user", "content": [{"type": "text", "text": "?"}, image]}]
    return {
        "bench chat (1 message)": dict(chat, messages=hello),
        "20 messages, 6 KB": dict(chat, messages=conversation),
        "5 tools, 8 KB": dict(chat, messages=hello, tools=_tools(5, 6)),
        "60 tools, 200 KB": dict(chat, messages=hello, tools=_tools(60, 60)),
        "1 MB image": dict(chat, messages=with_image),
    }


def main() -> None:
    print(f"{'body':<24} {'bytes':>9} {'estimate µs':>12} {'nesting µs':>11}")
    for name, body in bodies().items():
        raw = json.dumps(body).encode()
        runs = max(10, 200_000 // max(len(raw) // 100, 1))
        runs = min(runs, 20_000)
        est = timeit.timeit(lambda b=body: estimate.chat_prompt(b), number=runs) / runs * 1e6
        depth = timeit.timeit(lambda r=raw: nesting.too_deep(r), number=runs) / runs * 1e6
        print(f"{name:<24} {len(raw):>9,} {est:>12.1f} {depth:>11.1f}")


if __name__ == "__main__":
    main()
