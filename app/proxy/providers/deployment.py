"""A deployment as the proxy calls it, and what each provider kind says about calling one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from app.upstream.client import Client, Reply, Target, UpstreamFailure


@dataclass(frozen=True)
class DeploymentInfo:
    id: int
    provider: str
    base_url: str
    api_key: str | None
    api_version: str | None
    upstream_model: str
    region: str
    weight: int
    timeout_s: int


# The API formats (app/proxy/formats) and the path each takes on an OpenAI-style server.
OPENAI_PATHS = {"chat": "chat/completions", "embeddings": "embeddings", "responses": "responses"}


# (client, deployment, format, body, stream) -> the upstream's reply
Send = Callable[[Client, DeploymentInfo, str, dict, bool], Reply]
Address = Callable[[DeploymentInfo, str], tuple[str, dict[str, str]]]


@dataclass(frozen=True)
class Provider:
    kind: str
    speaks: frozenset[str]  # API formats it serves as they come: chat, embeddings, responses, messages
    lingua: str  # the format a call in another format is translated into, where a translation exists
    send: Send


JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def over_http(address: Address) -> Send:
    """A provider reached over HTTP: `address` says where a call goes and how it authenticates.
    Each deployment's request head is prepared once per format (a changed deployment is a new
    DeploymentInfo, so a new key)."""

    @lru_cache(maxsize=1024)
    def target(d: DeploymentInfo, fmt: str) -> tuple[Target, str]:
        return Target(*address(d, fmt)), f"deployment {d.id}"

    def send(client: Client, d: DeploymentInfo, fmt: str, body: dict, stream: bool) -> Reply:
        try:
            prepared, name = target(d, fmt)
        except ValueError as exc:
            raise UpstreamFailure(f"deployment {d.id}: {exc}", reached=False) from exc
        return client.send(prepared, body, float(d.timeout_s), stream, name)

    return send
