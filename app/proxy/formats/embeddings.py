"""OpenAI embeddings: `POST /v1/embeddings` (SPEC 3). No completion, no stream."""

from __future__ import annotations

from app.metering import estimate
from app.metering.estimate import PromptEstimate
from app.proxy.errors import ProxyError
from app.proxy.formats.chat import usage_of
from app.proxy.formats.format import Format, StreamReader, Usage


class Embeddings(Format):
    name = "embeddings"
    endpoint = "embeddings"

    def check(self, body: dict) -> bool:
        value = body.get("input")
        ok = (isinstance(value, str) and value != "") or (
            isinstance(value, list)
            and value
            and all(
                (isinstance(v, str) and v != "")
                or (isinstance(v, int) and not isinstance(v, bool))
                or (isinstance(v, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in v))
                for v in value
            )
        )
        if not ok:
            raise ProxyError(
                "invalid_request",
                "input must be a non-empty string, a list of strings, or token arrays.",
                param="input",
            )
        return False

    def prompt(self, body: dict) -> PromptEstimate:
        return estimate.embedding_input(body)

    def completion(self, body: dict) -> int | None:
        return 0

    def usage(self, reply: object) -> Usage | None:
        return usage_of(reply.get("usage") if isinstance(reply, dict) else None)

    def reader(self, wants_usage: bool) -> StreamReader:
        raise ProxyError("invalid_request", "Embeddings do not stream.", param="stream")


FORMAT = Embeddings()
