"""Reading fields of Stripe's objects. A signed event is Stripe's, but its shape follows the
endpoint's API version, so every field is read for what it is: a value of the wrong type, or one
longer than its column holds, reads as absent instead of failing the whole event."""

from __future__ import annotations

from typing import TypeGuard

# Stripe's ids are short (cs_live_ and 58 more); 190 leaves room in the ledger's 200-character
# idempotency key ("stripe:" + the id) and fits the 255-character columns.
MAX_ID = 190
MAX_AMOUNT = 10**15  # minor units: far past any real charge, well inside BIGINT


def mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def stripe_id(value: object, limit: int = MAX_ID) -> str | None:
    """An id, or an expandable field's id (the field may hold the expanded object)."""
    value = value.get("id") if isinstance(value, dict) else value
    return value if isinstance(value, str) and 0 < len(value) <= limit and "\x00" not in value else None


def text(value: object, limit: int) -> str | None:
    """Trimmed text without NULs (PostgreSQL cannot store one), cut to `limit`; None when empty."""
    if not isinstance(value, str):
        return None
    cleaned = value.replace("\x00", "").strip()
    return cleaned[:limit] or None


def is_amount(value: object) -> TypeGuard[int]:
    """A whole number of minor units (never a bool, which JSON's true would be in Python)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_AMOUNT


def amount(value: object) -> int | None:
    return value if is_amount(value) else None


def currency(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 8 else None


def quantity(value: object) -> int:
    """A line's quantity; Stripe leaves it out only where it is one."""
    return value if is_amount(value) else 1
