"""Which deployment serves a call: region filter, health (the shared breakers), weighted order."""

from __future__ import annotations

import random
from collections.abc import Sequence

from app.proxy.health import Health
from app.proxy.providers.deployment import DeploymentInfo


def in_regions(deployments: Sequence[DeploymentInfo], allowed: Sequence[str]) -> list[DeploymentInfo]:
    if not allowed:
        return list(deployments)
    return [d for d in deployments if d.region in allowed]


def order(candidates: list[DeploymentInfo], health: Health, rng: random.Random) -> list[DeploymentInfo]:
    """Deployments whose cool-down is over and which want their probe first (so a rested
    deployment is retried as soon as it may be, whatever its weight), then the healthy ones in
    weighted random order; resting ones not at all."""
    pool = [d for d in candidates if d.weight > 0 and not health.resting(d.id)]
    due = [d for d in pool if not health.healthy(d.id)]
    healthy = [d for d in pool if health.healthy(d.id)]
    ordered: list[DeploymentInfo] = []
    while healthy:
        pick = (
            rng.choices(healthy, weights=[d.weight for d in healthy])[0] if len(healthy) > 1 else healthy[0]
        )
        ordered.append(pick)
        healthy.remove(pick)
    return due + ordered
