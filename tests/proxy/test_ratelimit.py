"""Rate limits (SPEC 3.2 step 7) on both backends: in memory, and Redis shared by many processes.

Redis must be reachable (CI starts one): without it these tests fail, they do not skip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis

from app.proxy.ratelimit import SLOT_TTL_S, Limiter, RateLimited, Ticket
from tests.conftest import REDIS_URL

MakeLimiter = Callable[..., Limiter]


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request: pytest.FixtureRequest) -> MakeLimiter:
    """Builds Limiters of the backend under test; Redis ones share one fresh prefix."""
    if request.param == "memory":
        return lambda **options: Limiter(None, **options)
    prefix = request.getfixturevalue("redis_prefix")
    return lambda **options: Limiter(REDIS_URL, prefix=prefix, **options)


@pytest.fixture
def limiter(make_limiter: MakeLimiter) -> Limiter:
    return make_limiter()


def refusal(limiter: Limiter, key: str, **limits: int | None) -> RateLimited:
    with pytest.raises(RateLimited) as refused:
        admit(limiter, key, **limits)
    return refused.value


def admit(limiter: Limiter, key: str, **limits: int | None) -> Ticket:
    given: dict[str, int | None] = {"rpm": None, "tpm": None, "parallel": None}
    given.update(limits)
    return limiter.admit(key, rpm=given["rpm"], tpm=given["tpm"], parallel=given["parallel"])


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Explodes:
    """Stands in for the storage: any use fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"storage used: {name}")


def test_rpm_admits_exactly_the_limit_per_key(limiter: Limiter):
    for _ in range(5):
        admit(limiter, "p1:cust-1", rpm=5)

    refused = refusal(limiter, "p1:cust-1", rpm=5)

    assert refused.which == "rpm"
    assert 1 <= refused.retry_after <= 60
    assert "5 requests per minute" in str(refused)
    admit(limiter, "p1:cust-2", rpm=5)


def test_rpm_window_belongs_to_the_limit_value(limiter: Limiter):
    admit(limiter, "p1:cust-1", rpm=1)
    refusal(limiter, "p1:cust-1", rpm=1)

    admit(limiter, "p1:cust-1", rpm=2)  # another tier: another window


def test_parallel_holds_slots_until_released(limiter: Limiter):
    first = admit(limiter, "p1:cust-1", parallel=2)
    admit(limiter, "p1:cust-1", parallel=2)

    refused = refusal(limiter, "p1:cust-1", parallel=2)
    assert refused.which == "parallel"
    assert refused.retry_after == 1
    admit(limiter, "p1:cust-2", parallel=2)

    first.release()
    admit(limiter, "p1:cust-1", parallel=2)


def test_release_is_idempotent(limiter: Limiter):
    first = admit(limiter, "p1:cust-1", parallel=2)
    admit(limiter, "p1:cust-1", parallel=2)

    first.release()
    first.release()

    admit(limiter, "p1:cust-1", parallel=2)
    assert refusal(limiter, "p1:cust-1", parallel=2).which == "parallel"


def test_release_without_parallel_limit_is_a_no_op(limiter: Limiter):
    ticket = admit(limiter, "p1:cust-1", rpm=5, tpm=100)
    ticket.release()
    ticket.release()


def test_tpm_refuses_once_recorded_tokens_reach_the_limit(limiter: Limiter):
    admit(limiter, "p1:cust-1", tpm=100)
    limiter.record_tokens("p1:cust-1", 100, 60)
    admit(limiter, "p1:cust-1", tpm=100)
    limiter.record_tokens("p1:cust-1", 100, 50)

    refused = refusal(limiter, "p1:cust-1", tpm=100)

    assert refused.which == "tpm"
    assert 1 <= refused.retry_after <= 60
    admit(limiter, "p1:cust-2", tpm=100)


def test_a_call_larger_than_tpm_still_blocks(limiter: Limiter):
    limiter.record_tokens("p1:cust-1", 100, 500)
    assert refusal(limiter, "p1:cust-1", tpm=100).which == "tpm"


def test_a_call_larger_than_the_room_left_fills_the_window(limiter: Limiter):
    limiter.record_tokens("p1:cust-1", 100, 70)
    limiter.record_tokens("p1:cust-1", 100, 50)
    assert refusal(limiter, "p1:cust-1", tpm=100).which == "tpm"


def test_record_tokens_without_tpm_or_tokens_does_nothing(limiter: Limiter):
    limiter.record_tokens("p1:cust-1", None, 500)
    limiter.record_tokens("p1:cust-1", 100, 0)
    limiter.record_tokens("p1:cust-1", 100, -5)

    ticket = admit(limiter, "p1:cust-1", tpm=100)

    assert ticket.headers()["x-ratelimit-remaining-tokens"] == "100"


def test_refused_rpm_gives_back_the_parallel_slot(limiter: Limiter):
    admit(limiter, "p1:cust-1", rpm=1, parallel=1).release()

    assert refusal(limiter, "p1:cust-1", rpm=1, parallel=1).which == "rpm"

    # The slot is free: a parallel-only admission takes it, and a second one is refused.
    admit(limiter, "p1:cust-1", parallel=1)
    assert refusal(limiter, "p1:cust-1", parallel=1).which == "parallel"


def test_refused_tpm_gives_back_the_slot_and_takes_no_request(limiter: Limiter):
    limiter.record_tokens("p1:cust-1", 10, 10)

    for _ in range(3):
        assert refusal(limiter, "p1:cust-1", rpm=2, tpm=10, parallel=1).which == "tpm"

    admit(limiter, "p1:cust-1", rpm=2, parallel=1).release()
    admit(limiter, "p1:cust-1", rpm=2, parallel=1)


def test_refused_parallel_takes_no_request(limiter: Limiter):
    held = admit(limiter, "p1:cust-1", parallel=1)
    assert refusal(limiter, "p1:cust-1", rpm=1, parallel=1).which == "parallel"

    held.release()
    admit(limiter, "p1:cust-1", rpm=1, parallel=1)


def test_rpm_is_checked_before_tpm(limiter: Limiter):
    admit(limiter, "p1:cust-1", rpm=1)
    limiter.record_tokens("p1:cust-1", 10, 10)

    assert refusal(limiter, "p1:cust-1", rpm=1, tpm=10).which == "rpm"


def test_headers_report_limits_and_what_is_left(limiter: Limiter):
    admit(limiter, "p1:cust-1", rpm=3, tpm=100)
    limiter.record_tokens("p1:cust-1", 100, 30)

    ticket = admit(limiter, "p1:cust-1", rpm=3, tpm=100)

    assert ticket.headers() == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "70",
    }
    last = admit(limiter, "p1:cust-1", rpm=3)
    assert last.headers() == {"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0"}


def test_headers_are_empty_without_rpm_or_tpm(limiter: Limiter):
    assert admit(limiter, "p1:cust-1", parallel=2).headers() == {}
    assert admit(limiter, "p1:cust-1").headers() == {}


def test_no_limits_touch_no_storage(limiter: Limiter, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(limiter, "_windows", Explodes())
    monkeypatch.setattr(limiter, "_slots", Explodes())

    ticket = limiter.admit("p1:cust-1", rpm=None, tpm=None, parallel=None)
    limiter.record_tokens("p1:cust-1", None, 1000)

    ticket.release()
    assert ticket.headers() == {}


def test_a_leaked_slot_frees_after_the_safety_ttl(make_limiter: MakeLimiter):
    clock = FakeClock()
    limiter = make_limiter(clock=clock)
    admit(limiter, "p1:cust-1", parallel=1)  # never released: its process "crashed"

    clock.now += SLOT_TTL_S - 1
    assert refusal(limiter, "p1:cust-1", parallel=1).which == "parallel"

    clock.now += 2
    admit(limiter, "p1:cust-1", parallel=1)


def test_storage_errors_give_back_the_slot(limiter: Limiter, monkeypatch: pytest.MonkeyPatch):
    windows = limiter._windows
    monkeypatch.setattr(limiter, "_windows", Explodes())
    with pytest.raises(AssertionError):
        admit(limiter, "p1:cust-1", rpm=5, parallel=1)
    monkeypatch.setattr(limiter, "_windows", windows)

    admit(limiter, "p1:cust-1", parallel=1)


def test_redis_keys_carry_prefix_limit_and_expiry(redis_prefix: str, redis_client: redis.Redis):
    limiter = Limiter(REDIS_URL, prefix=redis_prefix)
    admit(limiter, "p1:cust-1", rpm=5, parallel=2)
    limiter.record_tokens("p1:cust-1", 100, 10)

    keys = {key.decode(): redis_client.ttl(key) for key in redis_client.scan_iter(match=f"{redis_prefix}:*")}

    # tpm is a sliding-window counter: its keys carry Redis hash tags around the item name.
    assert set(keys) == {
        f"{redis_prefix}:rpm/p1:cust-1/5/1/minute",
        f"{redis_prefix}:{{tpm/p1:cust-1/100/1/minute}}",
        f"{redis_prefix}:parallel:p1:cust-1",
    }
    assert 0 < keys[f"{redis_prefix}:rpm/p1:cust-1/5/1/minute"] <= 60
    assert 0 < keys[f"{redis_prefix}:parallel:p1:cust-1"] <= SLOT_TTL_S


def test_non_redis_url_is_refused():
    with pytest.raises(ValueError, match="Not a Redis URL"):
        Limiter("memcached://127.0.0.1:11211")


def run_together(count: int, work: Callable[[int], None]) -> None:
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_processes_sharing_redis_admit_exactly_rpm(redis_prefix: str):
    limiters = [Limiter(REDIS_URL, prefix=redis_prefix) for _ in range(20)]
    outcomes: list[str] = []

    def work(i: int) -> None:
        try:
            admit(limiters[i], "p1:cust-1", rpm=10)
            outcomes.append("admitted")
        except RateLimited as refused:
            outcomes.append(refused.which)

    run_together(20, work)

    assert sorted(outcomes) == ["admitted"] * 10 + ["rpm"] * 10


def test_processes_sharing_redis_hold_at_most_parallel(redis_prefix: str):
    limiters = [Limiter(REDIS_URL, prefix=redis_prefix) for _ in range(20)]
    outcomes: list[str] = []

    def work(i: int) -> None:
        try:
            admit(limiters[i], "p1:cust-1", parallel=3)
            outcomes.append("admitted")
        except RateLimited as refused:
            outcomes.append(refused.which)

    run_together(20, work)

    assert sorted(outcomes) == ["admitted"] * 3 + ["parallel"] * 17


def test_threads_sharing_one_memory_limiter_admit_exactly_rpm():
    limiter = Limiter(None)
    outcomes: list[str] = []

    def work(_: int) -> None:
        try:
            admit(limiter, "p1:cust-1", rpm=10, parallel=20)
            outcomes.append("admitted")
        except RateLimited as refused:
            outcomes.append(refused.which)

    run_together(20, work)

    assert sorted(outcomes) == ["admitted"] * 10 + ["rpm"] * 10
