"""Prices and money: integer nano-USD everywhere, Decimal only at the edges."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

NANO = 1_000_000_000
MTOK = 1_000_000
_QUANTUM = Decimal("0.000000001")


class MoneyError(ValueError):
    """A money amount that is not a finite, non-negative number with at most 9 decimals."""


@dataclass(frozen=True)
class Price:
    input_nusd_per_mtok: int
    output_nusd_per_mtok: int
    source: str  # "config" or "genai-prices"

    def cost_nusd(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Cost of one call, rounded up to the next nano-USD so spend is never under-counted."""
        numerator = prompt_tokens * self.input_nusd_per_mtok + completion_tokens * self.output_nusd_per_mtok
        return -(-numerator // MTOK)


def to_nusd(usd: object) -> int:
    """USD (str, int, Decimal or a float from YAML/JSON) to nano-USD, exactly or not at all."""
    if isinstance(usd, bool):
        raise MoneyError("a money amount must be a number")
    try:
        # str() first: a float such as 0.15 must mean the decimal the user wrote, not its binary value.
        value = Decimal(str(usd)) if isinstance(usd, float) else Decimal(usd)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise MoneyError(f"not a money amount: {usd!r}") from exc
    if not value.is_finite() or value < 0:
        raise MoneyError(f"money amounts must be finite and not negative: {usd!r}")
    nano = value * NANO
    if nano != nano.to_integral_value():
        raise MoneyError(f"money amounts have at most 9 decimals: {usd!r}")
    if nano >= 2**63:
        raise MoneyError(f"money amount too large: {usd!r}")
    return int(nano)


def to_usd(nusd: int) -> Decimal:
    return (Decimal(nusd) / NANO).quantize(_QUANTUM)


def usd_str(nusd: int) -> str:
    """The exact decimal string the API shows ("0.001413000")."""
    return f"{to_usd(nusd):f}"


def configured_price(input_per_mtok: object, output_per_mtok: object) -> Price:
    return Price(to_nusd(input_per_mtok), to_nusd(output_per_mtok), "config")


@lru_cache(maxsize=4096)
def genai_price(model: str) -> Price | None:
    """The price genai-prices ships for this model name (offline data), or None if it has none."""
    from genai_prices import Usage, calc_price

    try:
        found = calc_price(Usage(input_tokens=0, output_tokens=0), model_ref=model)
    except LookupError:
        return None
    mp = found.model_price
    if not isinstance(mp.input_mtok, Decimal | int) or not isinstance(mp.output_mtok, Decimal | int):
        return None  # tiered prices: not representable as a flat rate
    return Price(to_nusd(mp.input_mtok), to_nusd(mp.output_mtok), "genai-prices")


def resolve_price(input_nusd: int | None, output_nusd: int | None, model: str) -> Price | None:
    """Configured price first, else genai-prices, else None (the model is "unpriced")."""
    if input_nusd is not None and output_nusd is not None:
        return Price(input_nusd, output_nusd, "config")
    return genai_price(model)
