"""Process-local counters for /metrics (Prometheus text format).

Each worker process counts its own calls; Prometheus sums the workers it scrapes. Counting is a
dict increment, so the hot path pays next to nothing for it.
"""

from __future__ import annotations

import bisect
import os
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.metering.settlement import Charge

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

requests: Counter[tuple[str, int]] = Counter()
refusals: Counter[str] = Counter()
tokens: Counter[str] = Counter()
spend_nusd = [0]
shed = [0]
upstream_failures: Counter[int] = Counter()
latency_counts = [0] * (len(BUCKETS) + 1)
latency_sum = [0.0]


def finished(endpoint: str, status: int, seconds: float, code: str | None = None) -> None:
    requests[(endpoint, status)] += 1
    if code is not None:
        refusals[code] += 1
        if code == "load_shed":
            shed[0] += 1
    latency_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
    latency_sum[0] += seconds


def served(endpoint: str, charge: Charge) -> None:
    tokens["prompt"] += charge.prompt_tokens
    tokens["completion"] += charge.completion_tokens
    spend_nusd[0] += charge.cost_nusd


def upstream_failure(deployment_id: int) -> None:
    upstream_failures[deployment_id] += 1


def render(deployment_health: dict[int, bool]) -> str:
    pid = os.getpid()
    lines = [
        "# HELP tollgate_requests_total Proxy requests by endpoint and status.",
        "# TYPE tollgate_requests_total counter",
        *(
            f'tollgate_requests_total{{endpoint="{e}",status="{s}",pid="{pid}"}} {n}'
            for (e, s), n in sorted(requests.items())
        ),
        "# HELP tollgate_refusals_total Requests refused, by error code.",
        "# TYPE tollgate_refusals_total counter",
        *(f'tollgate_refusals_total{{code="{c}",pid="{pid}"}} {n}' for c, n in sorted(refusals.items())),
        "# HELP tollgate_shed_total Requests shed by load shedding.",
        "# TYPE tollgate_shed_total counter",
        f'tollgate_shed_total{{pid="{pid}"}} {shed[0]}',
        "# HELP tollgate_tokens_total Tokens metered.",
        "# TYPE tollgate_tokens_total counter",
        *(f'tollgate_tokens_total{{kind="{k}",pid="{pid}"}} {n}' for k, n in sorted(tokens.items())),
        "# HELP tollgate_spend_usd_total Spend metered, in USD.",
        "# TYPE tollgate_spend_usd_total counter",
        f'tollgate_spend_usd_total{{pid="{pid}"}} {spend_nusd[0] / 1e9:.9f}',
        "# HELP tollgate_upstream_failures_total Failed upstream attempts by deployment.",
        "# TYPE tollgate_upstream_failures_total counter",
        *(
            f'tollgate_upstream_failures_total{{deployment="{d}",pid="{pid}"}} {n}'
            for d, n in sorted(upstream_failures.items())
        ),
        "# HELP tollgate_deployment_healthy 1 while the deployment's circuit breaker is closed.",
        "# TYPE tollgate_deployment_healthy gauge",
        *(
            f'tollgate_deployment_healthy{{deployment="{d}",pid="{pid}"}} {int(ok)}'
            for d, ok in sorted(deployment_health.items())
        ),
        "# HELP tollgate_request_duration_seconds Proxy request latency.",
        "# TYPE tollgate_request_duration_seconds histogram",
    ]
    cumulative = 0
    for bound, count in zip((*BUCKETS, float("inf")), latency_counts, strict=True):
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'tollgate_request_duration_seconds_bucket{{le="{le}",pid="{pid}"}} {cumulative}')
    lines.append(f'tollgate_request_duration_seconds_sum{{pid="{pid}"}} {latency_sum[0]:.6f}')
    lines.append(f'tollgate_request_duration_seconds_count{{pid="{pid}"}} {cumulative}')
    return "\n".join(lines) + "\n"
