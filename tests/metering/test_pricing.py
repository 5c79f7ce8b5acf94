"""Money and token arithmetic: exact, never floats (hypothesis properties)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.metering import estimate
from app.metering.pricing import MoneyError, Price, genai_price, resolve_price, to_nusd, to_usd, usd_str
from tests.fakes.upstream import count_prompt_tokens

nano_decimals = st.decimals(min_value=0, max_value=10**6, places=9, allow_nan=False, allow_infinity=False)


@given(nano_decimals)
def test_usd_round_trips_exactly_through_nano(value: Decimal):
    assert to_usd(to_nusd(value)) == value
    assert Decimal(usd_str(to_nusd(value))) == value


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**12), st.integers(0, 10**12))
def test_cost_is_exact_ceiling(prompt: int, completion: int, price_in: int, price_out: int):
    cost = Price(price_in, price_out, "config").cost_nusd(prompt, completion)
    exact = Decimal(prompt * price_in + completion * price_out) / 10**6
    assert cost - 1 < exact <= cost


def test_floats_from_yaml_mean_the_decimal_written():
    assert to_nusd(0.15) == 150_000_000
    assert to_nusd(2.5e-05) == 25_000
    with pytest.raises(MoneyError):  # 0.30000000000000004: refused, never silently rounded
        to_nusd(0.1 + 0.2)


@pytest.mark.parametrize("bad", ["-1", "abc", "NaN", "Infinity", "0.0000000001", True, None, [1]])
def test_bad_money_is_refused(bad):
    with pytest.raises(MoneyError):
        to_nusd(bad)


def test_configured_price_wins_then_genai_prices_then_unpriced():
    assert resolve_price(1, 2, "gpt-4o-mini") == Price(1, 2, "config")
    # genai-prices' own cached-input rate comes with it ($0.075 per million for gpt-4o-mini)
    assert resolve_price(None, None, "gpt-4o-mini") == Price(
        150_000_000, 600_000_000, "genai-prices", 75_000_000
    )
    assert genai_price("surely-not-a-model-xyz") is None
    assert resolve_price(None, None, "surely-not-a-model-xyz") is None


def test_cache_tokens_are_priced_at_their_own_rates():
    """SPEC 3: Anthropic's cache reads and writes are prompt tokens at their own prices: the
    model's configured ones, else Anthropic's multiples of the input rate (0.1x and 1.25x)."""
    price = Price(3_000_000_000, 15_000_000_000, "config")  # $3 in, $15 out per million
    # 300 fresh at $3, 500 read at $0.30, 200 written at $3.75, 100 out at $15, per million
    assert (
        price.cost_nusd(1000, 100, cache_read=500, cache_write=200) == 900_000 + 150_000 + 750_000 + 1_500_000
    )
    assert price.cost_nusd(1000, 100) == 4_500_000
    own = Price(3_000_000_000, 15_000_000_000, "config", 1_000_000_000, 4_000_000_000)
    assert (
        own.cost_nusd(1000, 100, cache_read=500, cache_write=200) == 900_000 + 500_000 + 800_000 + 1_500_000
    )
    # of 200 writes, 80 kept an hour: those at twice the input rate, $6 per million
    assert (
        price.cost_nusd(1000, 100, 500, 200, cache_write_1h=80)
        == 900_000 + 150_000 + 450_000 + 480_000 + 1_500_000
    )
    # a hold prices every prompt token at the dearest rate (an hour's write), so the charge never
    # passes it; a model no deployment of which writes to a cache holds at the input rate
    assert price.upper_cost_nusd(1000, 100) == 3_000_000 + 1_500_000 == price.cost_nusd(1000, 100)
    caching = replace(price, caches=True)
    assert caching.upper_cost_nusd(1000, 100) == 6_000_000 + 1_500_000
    assert caching.upper_cost_nusd(1000, 100) == caching.cost_nusd(1000, 100, 0, 1000, 1000)


@given(
    prompt=st.integers(0, 10**7),
    completion=st.integers(0, 10**6),
    read=st.integers(0, 10**7),
    written=st.integers(0, 10**7),
    hour=st.integers(0, 10**7),
    rates=st.tuples(*(st.integers(0, 10**11),) * 2, *(st.none() | st.integers(0, 10**11),) * 3),
)
def test_a_holds_cost_covers_any_mix_of_cache_tokens(prompt, completion, read, written, hour, rates):
    price = Price(rates[0], rates[1], "config", *rates[2:], caches=True)
    read = min(read, prompt)
    written = min(written, prompt - read)
    hour = min(hour, written)
    assert price.upper_cost_nusd(prompt, completion) >= price.cost_nusd(
        prompt, completion, read, written, hour
    )
    # where nothing writes to a cache, reads alone never pass the hold either
    plain = replace(price, caches=False)
    assert plain.upper_cost_nusd(prompt, completion) >= plain.cost_nusd(prompt, completion, read)


words = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)


@given(
    st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]), "content": words}),
        min_size=1,
        max_size=8,
    )
)
def test_upper_estimate_covers_a_word_counting_tokenizer(messages):
    est = estimate.chat_prompt({"messages": messages})
    assert est.upper >= count_prompt_tokens(messages)
    assert est.upper >= est.likely > 0
