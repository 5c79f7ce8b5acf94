"""What every API format says about its calls (DESIGN "formats/"): how to check a request, size its
prompt and completion, set its completion limit, read usage from a reply and from a stream, and
shape an error. Admission, metering and settlement ask these questions and know no format."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

from flask import Response

from app import json_codec
from app.metering.estimate import PromptEstimate
from app.proxy.errors import ProxyError


@dataclass(frozen=True)
class Usage:
    """What the upstream says a call used. `prompt` counts every input token, cache reads and
    writes included (SPEC 3: they count against the balance and limits); the cache counts are
    priced at their own rates."""

    prompt: int
    completion: int
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0  # of the cache writes, those kept an hour (dearer than five minutes)


def valid_counts(*counts: object) -> bool:
    """Whether every count is a non-negative integer (an upstream's reply is not trusted either)."""
    return all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)


class StreamReader(ABC):
    """Reads a stream's server-sent events as they pass: the usage, the output relayed so far (what
    a hang-up is charged for, SPEC 5.2), and whether the upstream has finished. `feed` gets whole
    events (without their blank-line ends) and returns the bytes to send on."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        # Whether `usage` is the call's last word; Anthropic's message_start gives the prompt
        # early, with a completion of a token or so that only message_delta makes final.
        self.usage_final = False
        self.output = 0  # completion tokens relayed, as estimated from the deltas
        self.done = False

    def charged(self) -> Usage | None:
        """What a call that ends now is charged for: the final usage, or, on a hang-up, the
        prompt the upstream gave and the output relayed so far."""
        if self.usage is None or self.usage_final:
            return self.usage
        return replace(self.usage, completion=max(self.usage.completion, self.output))

    @abstractmethod
    def feed(self, events: list[bytes]) -> bytes: ...


class Format(ABC):
    name = ""  # chat, embeddings, responses, messages
    endpoint = ""  # as usage records and metrics name it: the path after /v1/
    customer_fields: tuple[str, ...] = ("user",)  # body fields that name the customer (SPEC 3.1 step 3)

    @abstractmethod
    def check(self, body: dict) -> bool:
        """Validate the request (400 naming the field); returns whether it streams."""
        ...

    @abstractmethod
    def prompt(self, body: dict) -> PromptEstimate: ...

    def completion(self, body: dict) -> int | None:
        """The completion tokens the call asks for at most, all choices; None: the tier's default."""
        return None

    def choices(self, body: dict) -> int:
        """How many completions the call asks for: each needs at least one token."""
        return 1

    def outgoing(self, body: dict, cap: int | None, stream: bool) -> tuple[dict, bool]:
        """The body to forward: the completion limit capped to `cap` (hard_cap), usage asked for.
        Also says whether the client asked for the stream's usage itself."""
        return body, False

    @abstractmethod
    def usage(self, reply: object) -> Usage | None:
        """The usage of a whole (non-stream) reply, parsed; None when it has none."""
        ...

    @abstractmethod
    def reader(self, wants_usage: bool) -> StreamReader: ...

    def error(self, err: ProxyError, headers: dict[str, str] | None = None) -> Response:
        """A refusal or failure in this format's error shape (SPEC 3.3)."""
        return err.response(headers)


def unmetered(name: str, why: str) -> ProxyError:
    """A refusal of what a hold cannot cover (SPEC 5.1), naming the field."""
    return ProxyError(
        "invalid_request",
        f"{name} is not accepted: {why}, so Tollgate cannot hold or charge for it.",
        param=name,
    )


def check_tools(body: dict, runs_in_client: tuple[object, ...]) -> None:
    """Tools the client runs are fine; one the upstream runs (web search, code execution...) is
    billed per use and by results never seen here: refused, naming it (SPEC 5.1)."""
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise ProxyError("invalid_request", "tools must be a list.", param="tools")
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict) or tool.get("type") not in runs_in_client:
            raise unmetered(
                f"tools[{i}].type", "tools run upstream are billed per use and by results never seen here"
            )


def event_name(event: bytes) -> bytes | None:
    """The name on an SSE event's `event:` line, if it has one."""
    for line in event.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip()
    return None


def data_of(event: bytes) -> object:
    """The JSON of an SSE event's `data:` line, or None."""
    start = event.find(b"data:")
    if start < 0:
        return None
    try:
        return json_codec.loads(event[start + 5 :])
    except (ValueError, RecursionError):  # an upstream's stream is not trusted either
        return None
