"""Prices and money: integer nano-USD everywhere, Decimal only at the edges."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property, lru_cache

NANO = 1_000_000_000
MTOK = 1_000_000
_QUANTUM = Decimal("0.000000001")


class MoneyError(ValueError):
    """A money amount that is not a finite, non-negative number with at most 9 decimals."""


# Anthropic's rates for prompt caching, as multiples of the input rate: a 5-minute cache write
# costs 1.25 times it, a cache read a tenth. Used when neither the model's configured price nor
# genai-prices gives the model's own cache rates.
CACHE_WRITE_RATE = (5, 4)
CACHE_WRITE_1H_RATE = (2, 1)  # a one-hour cache write
CACHE_READ_RATE = (1, 10)


@dataclass(frozen=True)
class Price:
    input_nusd_per_mtok: int
    output_nusd_per_mtok: int
    source: str  # "config" or "genai-prices"
    cache_read_nusd_per_mtok: int | None = None  # None: CACHE_READ_RATE of the input rate
    cache_write_nusd_per_mtok: int | None = None  # None: CACHE_WRITE_RATE of the input rate
    cache_write_1h_nusd_per_mtok: int | None = None  # None: CACHE_WRITE_1H_RATE of the input rate
    # Whether calls may write to a prompt cache (the model has a deployment whose usage reports
    # cache writes, Anthropic's): only then does a hold price prompt tokens at the write rates.
    caches: bool = False

    def cost_nusd(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cache_read: int = 0,
        cache_write: int = 0,
        cache_write_1h: int = 0,
    ) -> int:
        """Cost of one call, rounded up to the next nano-USD so spend is never under-counted.
        `prompt_tokens` counts every input token; `cache_read` and `cache_write` of them (and of
        the writes, `cache_write_1h` kept an hour) are priced at the cache rates (SPEC 3)."""
        fresh = prompt_tokens - cache_read - cache_write
        numerator = (
            fresh * self.input_nusd_per_mtok * _SCALE
            + cache_read * self._rate(self.cache_read_nusd_per_mtok, CACHE_READ_RATE)
            + (cache_write - cache_write_1h) * self._rate(self.cache_write_nusd_per_mtok, CACHE_WRITE_RATE)
            + cache_write_1h * self._rate(self.cache_write_1h_nusd_per_mtok, CACHE_WRITE_1H_RATE)
            + completion_tokens * self.output_nusd_per_mtok * _SCALE
        )
        return -(-numerator // (MTOK * _SCALE))

    def upper_cost_nusd(self, prompt_tokens: int, completion_tokens: int) -> int:
        """What a call may cost at most before its usage is known: every prompt token at the
        dearest of the input and cache rates, so a hold always covers the charge."""
        numerator = prompt_tokens * self._dearest + completion_tokens * self.output_nusd_per_mtok * _SCALE
        return -(-numerator // (MTOK * _SCALE))

    @cached_property
    def _dearest(self) -> int:
        """The dearest prompt rate, in 1/_SCALE nano-USD per million (worked out once a price)."""
        read = self._rate(self.cache_read_nusd_per_mtok, CACHE_READ_RATE)
        if not self.caches:  # nothing writes to a cache: the input rate, or a read's if dearer
            return max(self.input_nusd_per_mtok * _SCALE, read)
        return max(
            self.input_nusd_per_mtok * _SCALE,
            read,
            self._rate(self.cache_write_nusd_per_mtok, CACHE_WRITE_RATE),
            self._rate(self.cache_write_1h_nusd_per_mtok, CACHE_WRITE_1H_RATE),
        )

    def _rate(self, own: int | None, default: tuple[int, int]) -> int:
        """A cache rate in 1/_SCALE nano-USD per million: its own, else its multiple of input."""
        return (
            own * _SCALE if own is not None else self.input_nusd_per_mtok * _SCALE * default[0] // default[1]
        )


# Rates are compared and summed in units of 1/_SCALE nano-USD per million tokens, so that the
# default cache rates (1.25x, 0.1x) stay exact integers.
_SCALE = 20


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


def _nusd_or_none(value: object) -> int | None:
    return to_nusd(value) if isinstance(value, Decimal | int) else None


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
    return Price(
        to_nusd(mp.input_mtok),
        to_nusd(mp.output_mtok),
        "genai-prices",
        _nusd_or_none(mp.cache_read_mtok),
        _nusd_or_none(mp.cache_write_mtok),
        _nusd_or_none(getattr(mp, "cache_write_1h_mtok", None)),
    )


def resolve_price(
    input_nusd: int | None,
    output_nusd: int | None,
    model: str,
    cache_read_nusd: int | None = None,
    cache_write_nusd: int | None = None,
) -> Price | None:
    """Configured price first, else genai-prices, else None (the model is "unpriced"). Cache rates
    not configured are Anthropic's multiples of the configured input rate."""
    if input_nusd is not None and output_nusd is not None:
        return Price(input_nusd, output_nusd, "config", cache_read_nusd, cache_write_nusd)
    return genai_price(model)
