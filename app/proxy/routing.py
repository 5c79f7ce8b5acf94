"""Which deployment serves a call: region filter, health (the shared breakers), weighted order."""

from __future__ import annotations

import random
from collections.abc import Sequence

from app.proxy.auth import DeploymentInfo
from app.proxy.health import Health


def in_regions(deployments: Sequence[DeploymentInfo], allowed: Sequence[str]) -> list[DeploymentInfo]:
    if not allowed:
        return list(deployments)
    return [d for d in deployments if d.region in allowed]


def order(candidates: list[DeploymentInfo], health: Health, rng: random.Random) -> list[DeploymentInfo]:
    """Deployments not resting, in weighted random order (first choice by weight, then the rest)."""
    pool = [d for d in candidates if d.weight > 0 and not health.resting(d.id)]
    if len(pool) <= 1:
        return pool
    ordered: list[DeploymentInfo] = []
    while pool:
        pick = rng.choices(pool, weights=[d.weight for d in pool])[0]
        ordered.append(pick)
        pool.remove(pick)
    return ordered
