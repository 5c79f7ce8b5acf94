"""Process-local counters for /metrics (Prometheus text format), per project.

Each worker process counts its own calls; Prometheus sums the workers it scrapes. Counting is a
dict increment, so the hot path pays next to nothing for it. Every sample is labelled by project
(SPEC 2): a project's admin key reads only its own project's samples. Calls refused before their
key named a project are counted under project 0, shown as `project=""` to loopback and the
master key only.
"""

from __future__ import annotations

import bisect
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.metering.settlement import Charge

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
NO_PROJECT = 0

requests: Counter[tuple[int, str, int]] = Counter()
refusals: Counter[tuple[int, str]] = Counter()
tokens: Counter[tuple[int, str]] = Counter()
spend_nusd: Counter[int] = Counter()
shed: Counter[int] = Counter()
upstream_failures: Counter[int] = Counter()  # by deployment, whose project the snapshot knows
latency_counts: defaultdict[int, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
latency_sum: defaultdict[int, float] = defaultdict(float)


def finished(project: int, endpoint: str, status: int, seconds: float, code: str | None = None) -> None:
    requests[(project, endpoint, status)] += 1
    if code is not None:
        refusals[(project, code)] += 1
        if code == "load_shed":
            shed[project] += 1
    latency_counts[project][bisect.bisect_left(BUCKETS, seconds)] += 1
    latency_sum[project] += seconds


def served(project: int, charge: Charge) -> None:
    tokens[(project, "prompt")] += charge.prompt_tokens
    tokens[(project, "completion")] += charge.completion_tokens
    spend_nusd[project] += charge.cost_nusd


def upstream_failure(deployment_id: int) -> None:
    upstream_failures[deployment_id] += 1


def render(
    slugs: dict[int, str],
    deployments: dict[int, tuple[int, bool]],
    visible: Callable[[int], bool],
    levels: dict[tuple[int, str], int] | None = None,
) -> str:
    """The samples of the projects `visible` admits. `slugs`: project id -> slug;
    `deployments`: deployment id -> (project id, healthy); `levels`: (project id, model) -> the
    model's effective shedding level (0 off, 1 low, 2 middle), from the shared view."""
    pid = os.getpid()

    def label(project: int) -> str:
        return f'project="{slugs.get(project, "")}",pid="{pid}"'

    def shown(items: Iterable) -> list:
        return sorted(item for item in items if visible(_project(item[0])))

    lines = [
        "# HELP tollgate_requests_total Proxy requests by endpoint and status.",
        "# TYPE tollgate_requests_total counter",
        *(
            f'tollgate_requests_total{{endpoint="{e}",status="{s}",{label(p)}}} {n}'
            for (p, e, s), n in shown(requests.items())
        ),
        "# HELP tollgate_refusals_total Requests refused, by error code.",
        "# TYPE tollgate_refusals_total counter",
        *(f'tollgate_refusals_total{{code="{c}",{label(p)}}} {n}' for (p, c), n in shown(refusals.items())),
        "# HELP tollgate_shed_total Requests shed by load shedding.",
        "# TYPE tollgate_shed_total counter",
        *(f"tollgate_shed_total{{{label(p)}}} {n}" for p, n in shown(shed.items())),
        "# HELP tollgate_tokens_total Tokens metered.",
        "# TYPE tollgate_tokens_total counter",
        *(f'tollgate_tokens_total{{kind="{k}",{label(p)}}} {n}' for (p, k), n in shown(tokens.items())),
        "# HELP tollgate_spend_usd_total Spend metered, in USD.",
        "# TYPE tollgate_spend_usd_total counter",
        *(
            f"tollgate_spend_usd_total{{{label(p)}}} {n // 10**9}.{n % 10**9:09d}"
            for p, n in shown(spend_nusd.items())
        ),
        "# HELP tollgate_upstream_failures_total Failed upstream attempts by deployment.",
        "# TYPE tollgate_upstream_failures_total counter",
        *(
            f'tollgate_upstream_failures_total{{deployment="{d}",{label(p)}}} {n}'
            for d, n in sorted(upstream_failures.items())
            for p in [deployments.get(d, (NO_PROJECT, False))[0]]
            if visible(p)
        ),
        "# HELP tollgate_deployment_healthy 1 while the deployment's circuit breaker is closed.",
        "# TYPE tollgate_deployment_healthy gauge",
        *(
            f'tollgate_deployment_healthy{{deployment="{d}",{label(p)}}} {int(ok)}'
            for d, (p, ok) in sorted(deployments.items())
            if visible(p)
        ),
        "# HELP tollgate_shedding_level A model's effective shedding level: 0 off, 1 low, 2 middle.",
        "# TYPE tollgate_shedding_level gauge",
        *(
            f'tollgate_shedding_level{{model="{_escaped(m)}",{label(p)}}} {n}'
            for (p, m), n in sorted((levels or {}).items())
            if visible(p)
        ),
        "# HELP tollgate_request_duration_seconds Proxy request latency.",
        "# TYPE tollgate_request_duration_seconds histogram",
    ]
    for project, counts in shown(latency_counts.items()):
        lines.extend(_histogram(label(project), counts, latency_sum[project]))
    return "\n".join(lines) + "\n"


def _escaped(value: str) -> str:
    """A label value as Prometheus' text format spells it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _project(key: int | tuple) -> int:
    return key[0] if isinstance(key, tuple) else key


def _histogram(labels: str, counts: list[int], total: float) -> list[str]:
    lines, cumulative = [], 0
    for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'tollgate_request_duration_seconds_bucket{{le="{le}",{labels}}} {cumulative}')
    lines.append(f"tollgate_request_duration_seconds_sum{{{labels}}} {total:.6f}")
    lines.append(f"tollgate_request_duration_seconds_count{{{labels}}} {cumulative}")
    return lines
