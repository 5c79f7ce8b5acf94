"""A call in one API format served by a deployment that speaks another (SPEC 3): the request goes
out translated, the reply, the stream's events and the errors come back translated. A field with
no counterpart is refused with 400 naming it, never dropped."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod

from app.proxy.errors import ProxyError
from app.proxy.formats.chat import DONE
from app.proxy.formats.format import Format, data_of


class EventTranslator(ABC):
    """Turns the upstream's stream events (whole SSE events, without their blank-line ends) into
    the client's."""

    @abstractmethod
    def feed(self, events: list[bytes]) -> bytes: ...


class FromChunks(EventTranslator):
    """Chat completion chunks in, another format's events out: each chunk as it comes, and the
    closing events at `[DONE]`."""

    def feed(self, events: list[bytes]) -> bytes:
        out = []
        for event in events:
            if event.startswith(DONE):
                out.append(self.finish())
                continue
            data = data_of(event)
            if isinstance(data, dict):
                out.append(self.chunk(data))
        return b"".join(out)

    @abstractmethod
    def chunk(self, data: dict) -> bytes: ...

    @abstractmethod
    def finish(self) -> bytes: ...


class Bridge(ABC):
    client: Format  # the format the call came in
    upstream: Format  # the format the deployment speaks

    @abstractmethod
    def request(self, body: dict, completion: int) -> dict:
        """The client's body (its completion limit already capped) in the upstream's format;
        `completion` is the limit to send when the call gives none (what its hold covers)."""
        ...

    @abstractmethod
    def reply(self, data: dict) -> dict:
        """The upstream's whole 200 reply in the client's format."""
        ...

    @abstractmethod
    def error(self, status: int, raw: bytes) -> bytes:
        """The upstream's error reply in the client's error shape."""
        ...

    @abstractmethod
    def events(self, wants_usage: bool) -> EventTranslator: ...


class Chain(Bridge):
    """Two bridges one after the other: a Responses call to an anthropic deployment goes through
    chat (Responses -> chat -> messages, and back)."""

    def __init__(self, outer: Bridge, inner: Bridge) -> None:
        assert outer.upstream is inner.client
        self.outer, self.inner = outer, inner
        self.client, self.upstream = outer.client, inner.upstream

    def request(self, body: dict, completion: int) -> dict:
        return self.inner.request(self.outer.request(body, completion), completion)

    def reply(self, data: dict) -> dict:
        return self.outer.reply(self.inner.reply(data))

    def error(self, status: int, raw: bytes) -> bytes:
        return self.outer.error(status, self.inner.error(status, raw))

    def events(self, wants_usage: bool) -> EventTranslator:
        return _Chained(self.inner.events(True), self.outer.events(wants_usage))


class _Chained(EventTranslator):
    def __init__(self, inner: EventTranslator, outer: EventTranslator) -> None:
        self.inner, self.outer = inner, outer

    def feed(self, events: list[bytes]) -> bytes:
        middle = self.inner.feed(events)
        return self.outer.feed([e for e in middle.split(b"\n\n") if e])


def check_fields(body: dict, mapped: set[str], defaults: dict[str, tuple], api: str) -> None:
    """Every field is taken across (`mapped`), or left out as null, or comes at a value that means
    the default (`defaults`); any other is refused, naming it."""
    for name, value in body.items():
        if name in mapped or value is None:
            continue
        if name not in defaults or value not in defaults[name]:
            raise no_counterpart(name, api)


def openai_error(raw: bytes) -> bytes:
    """An upstream's error body (Anthropic's) in OpenAI's error shape, its type kept."""
    try:
        kind = json.loads(raw)["error"]["type"]
    except (ValueError, KeyError, TypeError, RecursionError):
        kind = "api_error"
    error = {"message": upstream_message(raw), "type": kind, "param": None, "code": None}
    return json.dumps({"error": error}).encode()


def no_counterpart(name: str, api: str) -> ProxyError:
    return ProxyError(
        "invalid_request",
        f"{name} has no counterpart in {api}, which serves this model: remove it, or use another model.",
        param=name,
    )


def sse(data: object, name: str | None = None) -> bytes:
    """One server-sent event, with its blank-line end."""
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def upstream_message(raw: bytes) -> str:
    """The message of an upstream's error body, whichever shape it has (OpenAI's and Anthropic's
    both keep it at error.message)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str) and message:
        return message
    return raw.decode("utf-8", "replace")[:1000] or "The upstream answered with an error."
