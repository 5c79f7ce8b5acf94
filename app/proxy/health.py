"""Deployment health and calls in flight (SPEC 8): one view for every worker and node.

A deployment is unhealthy after FAILURES_TO_OPEN failures or timeouts in a row; after COOL_DOWN_S
one call at a time probes it (a success heals it, a failure rests it again). Calls in flight are
counted per deployment (the health view) and per project (capacity shedding).

With TOLLGATE_REDIS_URL the state lives in Redis, so every process sees the same breakers and
counts; reads are cached for at most READ_S, so a change reaches every process within a second.
Without it, or while Redis cannot be reached, each process keeps its own (SPEC 12).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from app.proxy.ids import unique

FAILURES_TO_OPEN = 3
COOL_DOWN_S = 30.0
READ_S = 1.0  # how stale a process's copy of the shared breakers may be
FLIGHT_TTL_S = 15 * 60  # a call of a process that died stops counting after this long
PROBE_TTL_S = 60.0  # a probe whose call vanished (its process died) frees after this long
REDIS_TIMEOUT_S = 0.5
REDIS_RETRY_S = 1.0  # after Redis failed, the process's own view is used this long without asking it

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Breaker:
    failures: int = 0
    open_until: float = 0.0  # epoch seconds; 0 while closed


@dataclass(frozen=True)
class DeploymentHealth:
    state: str  # healthy | unhealthy | probing
    consecutive_failures: int
    in_flight: int
    retry_after: int  # seconds until its next probe (0 when healthy)


class Flight:
    """One call counted in flight; give it back exactly once (however the call ends), to the view
    it was counted in."""

    def __init__(self, health: Health | None = None, key: str = "", member: str = "", shared: bool = False):
        self._health, self._key, self._member, self._shared = health, key, member, shared

    def release(self) -> None:
        if self._health is not None:
            health, self._health = self._health, None
            health._remove(self._key, self._member, self._shared)


NO_FLIGHT = Flight()


class _Memory:
    """The process's own view."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.breakers: dict[int, Breaker] = {}
        self.probes: dict[int, float] = {}
        self.flights: dict[str, dict[str, float]] = {}

    def breaker(self, deployment_id: int) -> Breaker:
        return self.breakers.get(deployment_id, Breaker())

    def fail(self, deployment_id: int, now: float) -> None:
        with self.lock:
            failures = self.breaker(deployment_id).failures + 1
            open_until = now + COOL_DOWN_S if failures >= FAILURES_TO_OPEN else 0.0
            self.breakers[deployment_id] = Breaker(failures, open_until)
            self.probes.pop(deployment_id, None)

    def succeed(self, deployment_id: int) -> None:
        with self.lock:
            self.breakers.pop(deployment_id, None)
            self.probes.pop(deployment_id, None)

    def take_probe(self, deployment_id: int, now: float, ttl: float) -> bool:
        with self.lock:
            if self.probes.get(deployment_id, 0.0) > now:
                return False
            self.probes[deployment_id] = now + ttl
            return True

    def release_probe(self, deployment_id: int) -> None:
        with self.lock:
            self.probes.pop(deployment_id, None)

    def add(self, key: str, member: str, now: float) -> int:
        with self.lock:
            flying = self.flights.setdefault(key, {})
            for stale in [m for m, until in flying.items() if until <= now]:
                del flying[stale]
            flying[member] = now + FLIGHT_TTL_S
            return len(flying)

    def remove(self, key: str, member: str) -> None:
        with self.lock:
            flying = self.flights.get(key)
            if flying is not None:
                flying.pop(member, None)

    def count(self, key: str, now: float) -> int:
        with self.lock:
            return sum(1 for until in self.flights.get(key, {}).values() if until > now)


_FAIL = b"""
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 'open_until', ARGV[2])
end
redis.call('DEL', KEYS[2])
return failures
"""
_ADD = b"""
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCARD', KEYS[1])
"""


class _Redis:
    """The view every process shares."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self.prefix = prefix
        self._fail = self.client.register_script(_FAIL)
        self._add = self.client.register_script(_ADD)

    def _breaker_key(self, deployment_id: int) -> str:
        return f"{self.prefix}:breaker:{deployment_id}"

    def _probe_key(self, deployment_id: int) -> str:
        return f"{self.prefix}:probe:{deployment_id}"

    def breaker(self, deployment_id: int) -> Breaker:
        found = self.client.hgetall(self._breaker_key(deployment_id))
        return Breaker(int(found.get(b"failures", 0)), float(found.get(b"open_until", 0.0)))

    def fail(self, deployment_id: int, now: float) -> None:
        keys = [self._breaker_key(deployment_id), self._probe_key(deployment_id)]
        self._fail(keys=keys, args=[FAILURES_TO_OPEN, now + COOL_DOWN_S])

    def succeed(self, deployment_id: int) -> None:
        self.client.delete(self._breaker_key(deployment_id), self._probe_key(deployment_id))

    def take_probe(self, deployment_id: int, now: float, ttl: float) -> bool:
        return bool(self.client.set(self._probe_key(deployment_id), now, nx=True, px=max(1, int(ttl * 1000))))

    def release_probe(self, deployment_id: int) -> None:
        self.client.delete(self._probe_key(deployment_id))

    def add(self, key: str, member: str, now: float) -> int:
        return int(
            self._add(keys=[f"{self.prefix}:{key}"], args=[now, now + FLIGHT_TTL_S, member, FLIGHT_TTL_S])
        )

    def remove(self, key: str, member: str) -> None:
        self.client.zrem(f"{self.prefix}:{key}", member)

    def count(self, key: str, now: float) -> int:
        return int(self.client.zcount(f"{self.prefix}:{key}", now, "+inf"))


class Health:
    """The process's handle on the health view (shared through Redis when there is one)."""

    def __init__(
        self, redis_url: str | None = None, prefix: str = "tollgate", clock: Callable[[], float] = time.time
    ):
        self.clock = clock
        self.local = _Memory()
        self.shared = _Redis(redis_url, prefix) if redis_url else None
        self.redis_error: str | None = None  # why the shared view is not in use right now
        self._read: dict[int, tuple[float, Breaker]] = {}  # copies of shared breakers, by deployment
        self._down_until = 0.0
        self._unreleased: list[tuple[str, str]] = []  # flights Redis could not take back yet

    # --- breakers ---------------------------------------------------------------------------
    def breaker(self, deployment_id: int) -> Breaker:
        if self.shared is None:
            return self.local.breaker(deployment_id)
        now = time.monotonic()
        cached = self._read.get(deployment_id)
        if cached is not None and now - cached[0] < READ_S:
            return cached[1]
        found = self._shared(lambda s: s.breaker(deployment_id), lambda: self.local.breaker(deployment_id))
        self._read[deployment_id] = (now, found)
        return found

    def resting(self, deployment_id: int) -> bool:
        """Unhealthy and within its cool-down: no call goes to it."""
        breaker = self.breaker(deployment_id)
        return breaker.failures >= FAILURES_TO_OPEN and breaker.open_until > self.clock()

    def healthy(self, deployment_id: int) -> bool:
        return self.breaker(deployment_id).failures < FAILURES_TO_OPEN

    def probe_due(self, deployment_id: int) -> bool:
        """Unhealthy, and its cool-down is over: the next call may probe it."""
        breaker = self.breaker(deployment_id)
        return breaker.failures >= FAILURES_TO_OPEN and breaker.open_until <= self.clock()

    def take_probe(self, deployment_id: int, ttl: float) -> bool:
        """A rested deployment is tried by one call at a time: True when this call is that one."""
        now, ttl = self.clock(), min(ttl, PROBE_TTL_S)
        return self._shared(
            lambda s: s.take_probe(deployment_id, now, ttl),
            lambda: self.local.take_probe(deployment_id, now, ttl),
        )

    def release_probe(self, deployment_id: int) -> None:
        """A call that took the probe and was then refused: the next call may probe instead."""
        self._shared(
            lambda s: s.release_probe(deployment_id), lambda: self.local.release_probe(deployment_id)
        )

    def failed(self, deployment_id: int) -> None:
        now = self.clock()
        self._shared(lambda s: s.fail(deployment_id, now), lambda: self.local.fail(deployment_id, now))
        self._read.pop(deployment_id, None)

    def succeeded(self, deployment_id: int) -> None:
        if self.breaker(deployment_id).failures == 0:
            return  # nothing to heal (another process's failure shows within READ_S)
        self._shared(lambda s: s.succeed(deployment_id), lambda: self.local.succeed(deployment_id))
        self._read.pop(deployment_id, None)

    def view(self, deployment_id: int) -> DeploymentHealth:
        """Its state and calls in flight (a count read each time: for the health view, not calls)."""
        return self.view_breaker(deployment_id, self.count(f"flight:d:{deployment_id}"))

    def view_breaker(self, deployment_id: int, flying: int = 0) -> DeploymentHealth:
        breaker, now = self.breaker(deployment_id), self.clock()
        if breaker.failures < FAILURES_TO_OPEN:
            return DeploymentHealth("healthy", breaker.failures, flying, 0)
        if breaker.open_until > now:
            return DeploymentHealth(
                "unhealthy", breaker.failures, flying, max(1, int(breaker.open_until - now + 0.999))
            )
        return DeploymentHealth("probing", breaker.failures, flying, 1)

    # --- calls in flight ----------------------------------------------------------------------
    def fly(self, key: str) -> tuple[int, Flight]:
        """Count one more call under `key`; how many there are now, and the handle to end it."""
        member, now = unique(), self.clock()
        flying = self._shared(lambda s: s.add(key, member, now), lambda: None)
        if flying is not None:
            return flying, Flight(self, key, member, shared=True)
        return self.local.add(key, member, now), Flight(self, key, member)

    def count(self, key: str) -> int:
        now = self.clock()
        return self._shared(lambda s: s.count(key, now), lambda: self.local.count(key, now))

    def _remove(self, key: str, member: str, shared: bool) -> None:
        if not shared:
            self.local.remove(key, member)
        elif self._shared(lambda s: s.remove(key, member), lambda: False) is False:
            self._unreleased.append((key, member))  # given back once Redis answers again

    def _release_pending(self, shared: _Redis) -> None:
        while self._unreleased:
            key, member = self._unreleased.pop()
            shared.remove(key, member)

    @property
    def is_shared(self) -> bool:
        """Whether this process's view is every process's right now (Redis set and answering)."""
        return self.shared is not None and self.redis_error is None and time.monotonic() >= self._down_until

    def redis_problem(self) -> str | None:
        """Why Redis does not answer (None when it does, or when there is none): for /readyz."""
        if self.shared is None:
            return None
        try:
            self.shared.client.ping()
        except redis.RedisError as exc:
            return str(exc) or type(exc).__name__
        return None

    # --- the shared view, or the process's own when Redis cannot be reached -------------------
    def _shared(self, shared: Callable[[_Redis], object], local: Callable[[], object]):
        if self.shared is None or time.monotonic() < self._down_until:
            return local()  # no Redis, or it failed a moment ago: a dead Redis must not slow every call
        try:
            found = shared(self.shared)
            if self._unreleased:
                self._release_pending(self.shared)
        except redis.RedisError as exc:
            if self.redis_error is None:
                log.warning("health view: Redis unreachable, using this process's own view: %s", exc)
            self.redis_error = str(exc) or type(exc).__name__
            self._down_until = time.monotonic() + REDIS_RETRY_S
            return local()
        self.redis_error = None
        return found
