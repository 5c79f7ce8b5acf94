"""Per-customer rate limits (SPEC 3.2 step 7): rpm, tpm and max parallel requests.

rpm and tpm are `limits` moving windows of 60 s; in process memory when Tollgate runs as one
process, in Redis (TOLLGATE_REDIS_URL) when several processes or nodes serve, so every process sees
the same windows. Parallel slots live next to them: a dict in memory, a sorted set in Redis.

One `Limiter` per process. The proxy calls `admit` before forwarding, `Ticket.release` when the call
ends (however it ends), and `record_tokens` after settlement with the tokens actually used.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import redis
from limits import RateLimitItemPerMinute, WindowStats
from limits.storage import (
    RedisClusterStorage,
    RedisSentinelStorage,
    RedisStorage,
    Storage,
    storage_from_string,
)
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from app.proxy.ids import unique

WINDOW_S = 60
# A slot whose process died without releasing it is given back after this long. Longer than any
# call may last (the deployments' read timeout defaults to 600 s).
SLOT_TTL_S = 15 * 60
# A parallel slot frees when some call ends, which no window can predict.
PARALLEL_RETRY_AFTER_S = 1
# record_tokens: one optimistic hit, then capped hits that may lose a race with another process.
RECORD_ATTEMPTS = 3

_REDIS_SCHEMES = frozenset(
    scheme
    for storage in (RedisStorage, RedisClusterStorage, RedisSentinelStorage)
    for scheme in storage.STORAGE_SCHEME or ()
)
log = logging.getLogger(__name__)
_WHAT = {"rpm": "requests per minute", "tpm": "tokens per minute", "parallel": "parallel requests"}


REDIS_TIMEOUT_S = 0.5  # a Redis that does not answer is down for this call: refuse, do not wait


class LimitsUnavailable(Exception):
    """The shared windows cannot be read (Redis unreachable): a call under limits is refused, never
    counted per process (SPEC 12)."""


class RateLimited(Exception):
    """A call refused by the customer's rpm, tpm or parallel limit (429 `rate_limit_exceeded`)."""

    def __init__(self, which: str, limit: int, retry_after: int) -> None:
        self.which = which
        self.limit = limit
        self.retry_after = max(1, retry_after)
        super().__init__(f"Rate limit reached: {limit} {_WHAT[which]}. Try again in {self.retry_after} s.")


class _Slot:
    """One parallel slot taken; give it back exactly once."""

    def __init__(self, give_back: Callable[[str, str], None], key: str, member: str) -> None:
        self._give_back = give_back
        self._key = key
        self._member = member
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._give_back(self._key, self._member)


class _MemorySlots:
    """In-flight calls per key, for a single process: {key: {member: taken_at}}."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._held: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, limit: int) -> _Slot | None:
        now = self._clock()
        member = unique()
        with self._lock:
            held = self._held.setdefault(key, {})
            for stale in [m for m, taken_at in held.items() if taken_at <= now - SLOT_TTL_S]:
                del held[stale]
            if len(held) >= limit:
                return None
            held[member] = now
        return _Slot(self._give_back, key, member)

    def _give_back(self, key: str, member: str) -> None:
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                held.pop(member, None)
                if not held:
                    del self._held[key]


# Atomic across processes: drop slots older than the safety TTL, refuse when full, else add one.
# Each member expires on its own (a crashed process's slot frees after SLOT_TTL_S even while the
# customer keeps calling); the key's TTL only removes idle keys.
_TAKE_SLOT = b"""
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], ttl)
return 1
"""
_GIVE_BACK_SLOT = b"return redis.call('ZREM', KEYS[1], ARGV[1])"


class _RedisSlots:
    """In-flight calls per key shared by every process: a sorted set of members scored by take time."""

    def __init__(self, storage: RedisStorage, prefix: str, clock: Callable[[], float]) -> None:
        connection = storage.get_connection()
        self._take = connection.register_script(_TAKE_SLOT)
        self._give = connection.register_script(_GIVE_BACK_SLOT)
        self._prefix = prefix
        self._clock = clock

    def take(self, key: str, limit: int) -> _Slot | None:
        slot_key = f"{self._prefix}:parallel:{key}"
        member = unique()
        if not self._take(keys=[slot_key], args=[self._clock(), limit, SLOT_TTL_S, member]):
            return None
        return _Slot(self._give_back, slot_key, member)

    def _give_back(self, key: str, member: str) -> None:
        try:
            self._give(keys=[key], args=[member])
        except redis.RedisError:  # the slot frees itself after SLOT_TTL_S
            log.warning("parallel slot %s not given back, Redis unreachable", key)


class Ticket:
    """An admitted call: release its parallel slot when it ends; its x-ratelimit-* headers."""

    def __init__(
        self,
        slot: _Slot | None = None,
        rpm: int | None = None,
        requests_left: int = 0,
        tpm: int | None = None,
        tokens_left: int = 0,
    ) -> None:
        self._slot = slot
        self._rpm = rpm
        self._requests_left = requests_left
        self._tpm = tpm
        self._tokens_left = tokens_left

    def release(self) -> None:
        """Give back the parallel slot; safe to call more than once."""
        if self._slot is not None:
            self._slot.release()

    def headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the limits that are set, as of admission."""
        out: dict[str, str] = {}
        if self._rpm is not None:
            out["x-ratelimit-limit-requests"] = str(self._rpm)
            out["x-ratelimit-remaining-requests"] = str(max(0, self._requests_left))
        if self._tpm is not None:
            out["x-ratelimit-limit-tokens"] = str(self._tpm)
            out["x-ratelimit-remaining-tokens"] = str(max(0, self._tokens_left))
        return out


def _item(kind: str, limit: int) -> RateLimitItemPerMinute:
    # The namespace and the limit value are both part of the storage key ("rpm/<key>/<limit>/1/minute",
    # behind the Redis prefix), so two tiers with different limits never share a window.
    return RateLimitItemPerMinute(limit, namespace=kind)


def _retry_after(stats: WindowStats) -> int:
    # Clamped: entries stamped by a node whose clock runs ahead must not ask for more than a window.
    return min(WINDOW_S, max(1, math.ceil(stats.reset_time - time.time())))


class Limiter:
    """The process's rate limiter: in memory without a Redis URL, else shared through Redis."""

    def __init__(
        self,
        redis_url: str | None,
        prefix: str = "tollgate",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock` stamps parallel slots (for their safety expiry); the windows use `limits`' own time."""
        storage: Storage
        if redis_url:
            if urlsplit(redis_url).scheme not in _REDIS_SCHEMES:
                raise ValueError(f"Not a Redis URL for the rate limits: {urlsplit(redis_url).scheme}://…")
            shared = storage_from_string(
                redis_url,
                key_prefix=prefix,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            assert isinstance(shared, RedisStorage)
            storage = shared
            self._slots: _MemorySlots | _RedisSlots = _RedisSlots(shared, prefix, clock)
        else:
            local = storage_from_string("memory://")
            assert isinstance(local, Storage)
            storage = local
            self._slots = _MemorySlots(clock)
        self._windows = MovingWindowRateLimiter(storage)
        # A moving window stores one entry per unit of cost: fine for requests, ruinous for tokens
        # (a 1M tpm window would hold a million entries). Tokens use the sliding-window counter:
        # two counters per key, exact in the current window, weighted for the previous one.
        self._token_windows = SlidingWindowCounterRateLimiter(storage)

    def admit(self, key: str, rpm: int | None, tpm: int | None, parallel: int | None) -> Ticket:
        """Admit one call for `key` under its limits (None = no limit), or raise RateLimited.

        Checks parallel, rpm, tpm in that order. A refusal gives back what this admission took;
        nothing counts toward rpm unless the call is admitted. No storage access without limits.
        """
        if rpm is None and tpm is None and parallel is None:
            return Ticket()
        try:
            return self._admit(key, rpm, tpm, parallel)
        except redis.RedisError as exc:
            raise LimitsUnavailable(str(exc) or type(exc).__name__) from exc

    def _admit(self, key: str, rpm: int | None, tpm: int | None, parallel: int | None) -> Ticket:
        slot = self._take_slot(key, parallel) if parallel is not None else None
        try:
            requests_left = self._room(key, "rpm", rpm) if rpm is not None else 0
            tokens_left = self._room(key, "tpm", tpm) if tpm is not None else 0
            if rpm is not None:
                self._hit_rpm(key, rpm)
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        return Ticket(slot, rpm, requests_left - 1, tpm, tokens_left)

    def record_tokens(self, key: str, tpm: int | None, tokens: int) -> None:
        """Count a settled call's tokens in `key`'s tpm window (no-op without a tpm limit).

        `limits` refuses a hit whose cost exceeds the room left and then records nothing, and its
        windows never hold more than the limit. So the tokens are capped at the room left: a call
        that overshoots fills the window, which blocks the customer until the window moves on; the
        overshoot itself is not carried into later windows.
        """
        if tpm is None or tokens <= 0:
            return
        item = _item("tpm", tpm)
        cost = min(tokens, tpm)
        try:
            for _ in range(RECORD_ATTEMPTS):
                if cost <= 0 or self._token_windows.hit(item, key, cost=cost):
                    return
                cost = min(tokens, self._token_windows.get_window_stats(item, key).remaining)
        except redis.RedisError:  # the call is over: its tokens go uncounted, the next call fails closed
            log.warning("tpm: %s tokens of %s not counted, Redis unreachable", tokens, key)

    def _take_slot(self, key: str, parallel: int) -> _Slot:
        slot = self._slots.take(key, parallel)
        if slot is None:
            raise RateLimited("parallel", parallel, PARALLEL_RETRY_AFTER_S)
        return slot

    def _room(self, key: str, kind: str, limit: int) -> int:
        """What the window has left, or RateLimited when nothing is left. Takes nothing."""
        windows = self._windows if kind == "rpm" else self._token_windows
        stats = windows.get_window_stats(_item(kind, limit), key)
        if stats.remaining <= 0:
            raise RateLimited(kind, limit, _retry_after(stats))
        return stats.remaining

    def _hit_rpm(self, key: str, rpm: int) -> None:
        item = _item("rpm", rpm)
        # Another process may have taken the last request since _room looked.
        if not self._windows.hit(item, key):
            raise RateLimited("rpm", rpm, _retry_after(self._windows.get_window_stats(item, key)))
