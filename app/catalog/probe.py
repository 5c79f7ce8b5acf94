"""The admin's Test button: one real call to one deployment, charged to nobody and recorded nowhere.

It goes through the pooled upstream client and the provider's own `send` (public to the admin),
in the provider's own API format, so the URL, headers and key are exactly what a proxied call
would send.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from app.crypto import SecretError, unseal
from app.models.catalog import Deployment
from app.proxy.providers import PROVIDERS, send
from app.proxy.providers.deployment import DeploymentInfo
from app.upstream.client import Client, Reply, UpstreamFailure

# An admin is waiting on the page: a deployment slower than this is as good as down for a test.
READ_TIMEOUT_S = 15
SHOWN_MAX = 500
# A body both chat completions and Anthropic's messages take as it is.
BODY = {"messages": [{"role": "user", "content": "Reply with the word OK."}], "max_tokens": 1}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None  # None when no HTTP answer came back
    latency_ms: int
    text: str  # the reply, or what went wrong


class Unusable(Exception):
    """The deployment cannot be called as stored (its secret no longer decrypts)."""


def target(deployment: Deployment, secret_key: str) -> DeploymentInfo:
    """The deployment as the proxy's snapshot holds it, with the test's shorter read timeout."""
    try:
        api_key = unseal(secret_key, deployment.api_key)
    except SecretError as exc:
        raise Unusable(str(exc)) from exc
    return DeploymentInfo(
        id=deployment.id,
        provider=deployment.provider,
        base_url=deployment.base_url.rstrip("/"),
        api_key=api_key,
        api_version=deployment.api_version,
        upstream_model=deployment.upstream_model,
        region=deployment.region,
        weight=deployment.weight,
        timeout_s=min(deployment.timeout_s, READ_TIMEOUT_S),
    )


def call(client: Client, info: DeploymentInfo) -> Outcome:
    """One tiny chat completion (max_tokens 1); failures are reported, never raised."""
    started = time.perf_counter()
    try:
        fmt = PROVIDERS[info.provider].lingua
        reply = send(client, info, fmt, dict(BODY, model=info.upstream_model), stream=False)
    except UpstreamFailure as failure:
        return Outcome(False, None, _since(started), str(failure))
    return _outcome(reply, _since(started))


def _since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _outcome(reply: Reply, latency_ms: int) -> Outcome:
    raw = reply.body or b""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # an upstream's reply is not trusted either
        body = None
    if reply.status == 200 and isinstance(body, dict):
        return Outcome(True, 200, latency_ms, _reply_text(body))
    return Outcome(False, reply.status, latency_ms, _error_text(body, raw))


def _reply_text(body: dict) -> str:
    try:
        if "content" in body:  # Anthropic's message: a list of content blocks
            content = "".join(b.get("text", "") for b in body["content"] if isinstance(b, dict))
        else:
            content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError, AttributeError):
        return "(an answer without a message)"
    return str(content)[:SHOWN_MAX] if content else "(an empty reply)"


def _error_text(body: object, raw: bytes) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str) and message:
        return message[:SHOWN_MAX]
    return raw.decode("utf-8", "replace")[:SHOWN_MAX] or "(an empty answer)"
