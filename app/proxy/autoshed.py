"""Automatic shedding (SPEC 8), for projects that turn it on: by the health of a model's
deployments, and by the project's calls in flight against its capacity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.metering.shedding import higher
from app.proxy.auth import DeploymentInfo, ModelInfo, ProjectInfo
from app.proxy.health import Health


@dataclass(frozen=True)
class AutoLevel:
    level: str = "off"
    reason: str = ""
    retry_after: int = 1  # seconds until the next health probe


OFF = AutoLevel()


def by_health(health: Health, deployments: Sequence[DeploymentInfo], probing: int | None = None) -> AutoLevel:
    """While some of the model's deployments are unhealthy, `low`; while fewer than half are
    healthy, `middle` too. `probing`: the deployment this call is about to probe, counted healthy
    for it (or no shed call could ever try it, and the level would never fall)."""
    views = [health.view_breaker(d.id) for d in deployments if d.id != probing]
    sick = [v for v in views if v.state != "healthy"]
    if not sick:
        return OFF
    total = len(views) + (probing is not None)
    healthy = total - len(sick)
    level = "middle" if healthy * 2 < total else "low"
    retry = max(1, min(v.retry_after for v in sick))
    return AutoLevel(level, f"{len(sick)} of {len(views)} deployments unhealthy", retry)


def by_capacity(in_flight: int, capacity: int) -> AutoLevel:
    """The project's calls in flight (not counting the arriving one) past 80% of its capacity:
    `low`; past 95%: `middle` too."""
    if in_flight * 100 > capacity * 95:
        return AutoLevel("middle", f"{in_flight} calls in flight, capacity {capacity}")
    if in_flight * 100 > capacity * 80:
        return AutoLevel("low", f"{in_flight} calls in flight, capacity {capacity}")
    return OFF


def combined(a: AutoLevel, b: AutoLevel) -> AutoLevel:
    if higher(a.level, b.level) == a.level and a.level != "off":
        return a
    return b if b.level != "off" else a


@dataclass(frozen=True)
class ModelLevel:
    level: str  # the effective level: the higher of the manual and the automatic
    reason: str


def automatic(health: Health, project: ProjectInfo, model: ModelInfo) -> AutoLevel:
    """What automatic shedding would make of the model now, whether or not the project has it on."""
    auto = by_health(health, model.deployments)
    if project.capacity is not None:
        auto = combined(auto, by_capacity(health.count(f"flight:p:{project.id}"), project.capacity))
    return auto


def level_of(manual: str, auto: AutoLevel, auto_on: bool) -> ModelLevel:
    """The effective level: the higher of the manual one and, when it is on, the automatic one."""
    auto = auto if auto_on else OFF
    level = higher(manual, auto.level)
    if level == "off":
        return ModelLevel("off", "")
    return ModelLevel(level, "manual" if level == manual else f"automatic: {auto.reason}")


def effective(health: Health, project: ProjectInfo, model: ModelInfo, manual: str) -> ModelLevel:
    """A model's effective shedding level as the shared view sees it now (the health view and
    metrics; each call decides with its own statement)."""
    auto = automatic(health, project, model) if project.auto_shedding else OFF
    return level_of(manual, auto, project.auto_shedding)
