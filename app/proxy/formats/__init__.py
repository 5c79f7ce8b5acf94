"""The API formats the proxy takes (SPEC 3), one module each, and the bridges between them: a call
in a format its deployment does not speak goes out and comes back translated."""

from __future__ import annotations

from app.proxy.formats import (
    chat,
    chat_over_messages,
    embeddings,
    messages,
    messages_over_chat,
    responses,
    responses_over_chat,
)
from app.proxy.formats.bridge import Bridge, Chain
from app.proxy.formats.format import Format
from app.proxy.providers.deployment import Provider

FORMATS: dict[str, Format] = {
    f.name: f for f in (chat.FORMAT, embeddings.FORMAT, messages.FORMAT, responses.FORMAT)
}
BRIDGES: dict[tuple[str, str], Bridge] = {
    (b.client.name, b.upstream.name): b
    for b in (
        chat_over_messages.BRIDGE,
        messages_over_chat.BRIDGE,
        responses_over_chat.BRIDGE,
        Chain(responses_over_chat.BRIDGE, chat_over_messages.BRIDGE),
    )
}


def route(fmt: Format, provider: Provider) -> tuple[Format, Bridge | None] | None:
    """How a call in `fmt` reaches a deployment of `provider`: (the format it goes out in, the
    bridge that translates it, if any); None when the deployment cannot serve it."""
    if fmt.name in provider.speaks:
        return fmt, None
    bridge = BRIDGES.get((fmt.name, provider.lingua))
    return (bridge.upstream, bridge) if bridge is not None else None
