"""OpenAI chat completions: `POST /v1/chat/completions` (SPEC 3)."""

from __future__ import annotations

import re

from app import json_codec
from app.metering import estimate
from app.metering.estimate import COMPLETION_FIELDS, PromptEstimate
from app.proxy.bodies import positive_int
from app.proxy.errors import ProxyError
from app.proxy.formats.format import Format, StreamReader, Usage, check_tools, unmetered, valid_counts

MAX_N = 128
DONE = b"data: [DONE]"
# A delta that carries output (SPEC 5.2), a non-empty string: content, tool-call or function-call
# arguments, a refusal, reasoning (DeepSeek's and vLLM's `reasoning_content`, OpenRouter's
# `reasoning` and its `reasoning_details` texts), an audio answer's transcript.
OUTPUT_DELTA = re.compile(
    rb'"(?:content|arguments|refusal|reasoning_content|reasoning|text|transcript)": ?"((?:[^"\\]|\\.)+)"'
)


def output_tokens(event: bytes, pattern: re.Pattern[bytes] = OUTPUT_DELTA) -> int:
    """What a hang-up is charged for: a token per four bytes of output, at least one a delta
    (servers differ in how many tokens a delta carries)."""
    return sum(max(1, (len(text) + 3) // 4) for text in pattern.findall(event))


# Tools the client runs; others (a search model's web search, a provider's server tools) run
# upstream, billed per use and by results never seen here.
CLIENT_TOOLS = ("function", "custom")


def _check_metered(body: dict) -> None:
    """Refuse what a hold cannot cover (SPEC 5.1): web search, server tools, files."""
    if body.get("web_search_options") is not None:
        raise unmetered("web_search_options", "web searches are billed per use")
    check_tools(body, CLIENT_TOOLS)
    for i, message in enumerate(body["messages"]):
        content = message.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if isinstance(part, dict) and part.get("type") == "file":
                raise unmetered(
                    f"messages[{i}].content[{j}]", "a file is billed by its pages or held upstream"
                )


class Chat(Format):
    name = "chat"
    endpoint = "chat/completions"

    def check(self, body: dict) -> bool:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ProxyError("invalid_request", "messages must be a non-empty list.", param="messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise ProxyError(
                    "invalid_request",
                    f"messages[{i}] must be an object with a string role.",
                    param=f"messages[{i}]",
                )
            content = message.get("content")
            if content is not None and not isinstance(content, str | list):
                raise ProxyError(
                    "invalid_request",
                    f"messages[{i}].content must be a string or a list of parts.",
                    param=f"messages[{i}].content",
                )
        for name in COMPLETION_FIELDS:
            positive_int(body, name)
        if "chat_template" in body:
            # vLLM renders a request's own template: a few bytes of Jinja can make a prompt of any length.
            raise ProxyError(
                "invalid_request",
                "chat_template is not accepted: the deployment's own template applies.",
                param="chat_template",
            )
        positive_int(body, "n", MAX_N)
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise ProxyError("invalid_request", "stream must be a boolean.", param="stream")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise ProxyError("invalid_request", "stream_options must be an object.", param="stream_options")
        _check_metered(body)
        return bool(stream)

    def prompt(self, body: dict) -> PromptEstimate:
        return estimate.chat_prompt(body)

    def completion(self, body: dict) -> int | None:
        return estimate.completion_request(body)

    def choices(self, body: dict) -> int:
        return estimate.choices(body)

    def outgoing(self, body: dict, cap: int | None, stream: bool) -> tuple[dict, bool]:
        out = dict(body)
        if cap is not None:
            # Every limit field present is capped: servers differ in which one they honour (SPEC 5.2).
            per_choice = max(1, cap // (body.get("n") or 1))
            given = [name for name in COMPLETION_FIELDS if body.get(name) is not None] or ["max_tokens"]
            for name in given:
                out[name] = min(body.get(name) or per_choice, per_choice)
        if not stream:
            return out, False
        options = dict(body.get("stream_options") or {})
        wants_usage = bool(options.get("include_usage"))
        options["include_usage"] = True  # the upstream's usage settles the call (SPEC 5.2)
        out["stream_options"] = options
        return out, wants_usage

    def usage(self, reply: object) -> Usage | None:
        usage = reply.get("usage") if isinstance(reply, dict) else None
        return usage_of(usage)

    def reader(self, wants_usage: bool) -> StreamReader:
        return ChatStream(wants_usage)


def usage_of(usage: object) -> Usage | None:
    """OpenAI's usage block (chat completions and embeddings)."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
    return Usage(prompt, completion) if valid_counts(prompt, completion) else None  # type: ignore[arg-type]


class ChatStream(StreamReader):
    """Passes chunks through untouched, keeping the usage and hiding it from clients that did not
    ask for it (the forced include_usage, SPEC 5.2)."""

    def __init__(self, wants_usage: bool) -> None:
        super().__init__()
        self.wants_usage = wants_usage

    def feed(self, events: list[bytes]) -> bytes:
        out = []
        for event in events:
            if event.startswith(DONE):
                self.done = True
            elif b'"usage"' in event and b'"usage":null' not in event and b'"usage": null' not in event:
                usage = _usage_in(event)
                if usage is not None:
                    self.usage, self.usage_final = usage, True
                    if not self.wants_usage and b'"choices":[]' in event.replace(b" ", b""):
                        continue
            else:
                self.output += output_tokens(event)
            out.append(event)
            out.append(b"\n\n")
        joined = b"".join(out)
        if not self.wants_usage and b"null" in joined:
            # The forced include_usage adds "usage": null to every chunk; a client that did not ask
            # gets the chunks as the upstream would have sent them to it.
            joined = joined.replace(b',"usage":null', b"").replace(b', "usage": null', b"")
        return joined


def _usage_in(event: bytes) -> Usage | None:
    try:
        data = json_codec.loads(event[event.index(b"{") :])
    except (ValueError, RecursionError):  # an upstream's reply is not trusted either
        return None
    return usage_of(data.get("usage")) if isinstance(data, dict) else None


FORMAT = Chat()
