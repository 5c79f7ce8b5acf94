"""Which deployment serves a call: region filter, health (circuit breaker), weighted order."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.proxy.auth import DeploymentInfo

FAILURES_TO_OPEN = 3
COOL_DOWN_S = 30.0


@dataclass
class _Health:
    failures: int = 0
    open_until: float = 0.0


class Breakers:
    """Per-process circuit breakers: a deployment that failed several times in a row rests a while."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._state: dict[int, _Health] = {}

    def available(self, deployment_id: int) -> bool:
        state = self._state.get(deployment_id)
        return state is None or state.open_until <= self.clock()

    def healthy(self, deployment_id: int) -> bool:
        state = self._state.get(deployment_id)
        return state is None or state.failures < FAILURES_TO_OPEN

    def failed(self, deployment_id: int) -> None:
        state = self._state.setdefault(deployment_id, _Health())
        state.failures += 1
        if state.failures >= FAILURES_TO_OPEN:
            # After the cool-down one call probes it again; a failure re-opens the breaker.
            state.open_until = self.clock() + COOL_DOWN_S

    def succeeded(self, deployment_id: int) -> None:
        if deployment_id in self._state:
            del self._state[deployment_id]


def in_regions(deployments: Sequence[DeploymentInfo], allowed: Sequence[str]) -> list[DeploymentInfo]:
    if not allowed:
        return list(deployments)
    return [d for d in deployments if d.region in allowed]


def order(candidates: list[DeploymentInfo], breakers: Breakers, rng: random.Random) -> list[DeploymentInfo]:
    """Available deployments in weighted random order (first choice by weight, then the rest)."""
    pool = [d for d in candidates if d.weight > 0 and breakers.available(d.id)]
    if len(pool) <= 1:
        return pool
    ordered: list[DeploymentInfo] = []
    while pool:
        pick = rng.choices(pool, weights=[d.weight for d in pool])[0]
        ordered.append(pick)
        pool.remove(pick)
    return ordered
