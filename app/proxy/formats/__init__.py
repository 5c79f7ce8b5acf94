"""The API formats the proxy takes (SPEC 3), one module each, and the translations between them."""

from __future__ import annotations

from app.proxy.formats import chat, embeddings
from app.proxy.formats.format import Format

FORMATS: dict[str, Format] = {f.name: f for f in (chat.FORMAT, embeddings.FORMAT)}
