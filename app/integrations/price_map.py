"""The project's Stripe price map (Stripe price id → tokens and/or tier, SPEC 7.5) and what a
purchase bought: the map over the line items, else the session's `tollgate_*` metadata."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from app.errors import Invalid
from app.metering.credits import MAX_TOKENS

MAX_PRICE_ID = 255
MAX_TIER_KEY = 64  # the tiers' key column


@dataclass(frozen=True)
class Goods:
    tokens: int
    tier_key: str | None
    how: str  # "the price map" or "the metadata", for the received event's detail


class NothingBought(Exception):
    """Nothing to grant could be read from the purchase; the message says why."""


def parse(raw: object, tier_keys: Collection[str]) -> dict[str, dict]:
    """A price map as stored: {price_id: {"tokens": int, "tier": key}}, each with one or both.

    Tiers must be the project's; tokens whole numbers from 0 to MAX_TOKENS.
    """
    if not isinstance(raw, dict):
        raise Invalid("prices must map Stripe price ids to {tokens, tier}", "prices")
    prices = {}
    for price_id, spec in raw.items():
        prices[_price_id(price_id)] = _entry(price_id, spec, tier_keys)
    return prices


def _price_id(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > MAX_PRICE_ID or any(c.isspace() or c == "\x00" for c in text):
        raise Invalid(f"{value!r} is not a Stripe price id (such as price_1Q…)", "prices")
    return text


def _entry(price_id: str, spec: object, tier_keys: Collection[str]) -> dict:
    if not isinstance(spec, dict) or set(spec) - {"tokens", "tier"}:
        raise Invalid(f"{price_id}: give tokens and/or tier", "prices")
    entry: dict = {}
    tokens = spec.get("tokens")
    if tokens is not None:
        if isinstance(tokens, bool) or not isinstance(tokens, int) or not 0 <= tokens <= MAX_TOKENS:
            raise Invalid(f"{price_id}: tokens must be a whole number from 0 to {MAX_TOKENS:,}", "prices")
        entry["tokens"] = tokens
    tier = spec.get("tier")
    if tier not in (None, ""):
        if tier not in tier_keys:
            raise Invalid(f"{price_id}: there is no tier {tier!r}", "prices")
        entry["tier"] = tier
    if not entry.get("tokens") and not entry.get("tier"):
        raise Invalid(f"{price_id}: give tokens (at least 1), a tier, or both", "prices")
    return entry


def bought(prices: dict, lines: Iterable[tuple[str, int]] | None, metadata: dict) -> Goods:
    """What was bought: the price map over the line items (each line's tokens times its quantity;
    the tier of the first mapped line), else `metadata.tollgate_tokens` / `tollgate_tier`."""
    mapped = [(prices[price], quantity) for price, quantity in lines or () if price in prices]
    if mapped:
        tokens = sum(entry.get("tokens", 0) * quantity for entry, quantity in mapped)
        tier = next((entry["tier"] for entry, _ in mapped if entry.get("tier")), None)
        return Goods(_bounded(tokens), tier, "the price map")
    raw_tokens, raw_tier = metadata.get("tollgate_tokens"), metadata.get("tollgate_tier")
    if raw_tokens is None and raw_tier in (None, ""):
        raise NothingBought(
            "nothing to grant: no line item's price is in the price map, and the metadata has "
            "no tollgate_tokens or tollgate_tier"
        )
    return Goods(_metadata_tokens(raw_tokens), _metadata_tier(raw_tier), "the metadata")


def _metadata_tier(raw: object) -> str | None:
    if raw in (None, ""):
        return None
    if not isinstance(raw, str) or len(raw) > MAX_TIER_KEY or "\x00" in raw:
        raise NothingBought(f"metadata.tollgate_tier {str(raw)[:80]!r} is not a tier key")
    return raw


def _metadata_tokens(raw: object) -> int:
    if raw is None:
        return 0
    text = str(raw).strip().replace("_", "")
    if not (text.isascii() and text.isdigit()) or len(text) > 16:
        raise NothingBought(f"metadata.tollgate_tokens {str(raw)[:80]!r} is not a whole number of tokens")
    return _bounded(int(text))


def _bounded(tokens: int) -> int:
    if tokens > MAX_TOKENS:
        raise NothingBought(f"{tokens:,} tokens is more than one purchase may credit ({MAX_TOKENS:,})")
    return tokens
