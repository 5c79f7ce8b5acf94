"""What the dashboard shows, each read in one statement whatever the number of usage records.

Usage is summed in SQL per model tier and UTC hour or day; Python only places the few grouped rows
(at most buckets times model tiers) into series. Successful calls only (status 200), as /api/usage counts.
Refusals are summed the same way per code, from the hourly counts of SPEC 5.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, SQLColumnExpression, func, select
from sqlalchemy.orm import Session

from app.models.catalog import Deployment, Model
from app.models.customer import Customer
from app.models.tier import MODEL_TIERS
from app.models.usage import REFUSAL_CODES, RefusalCount, UsageRecord
from app.proxy.health import Health as DeploymentsHealth

TOP = 10


@dataclass(frozen=True)
class Span:
    """A range of whole UTC hours or days ending with the current one."""

    key: str
    title: str
    step: timedelta
    count: int
    pattern: str  # a bucket's key: strftime in Python and in SQLite, so both spell it alike
    pg_pattern: str  # the same key through PostgreSQL's to_char
    tick: str  # strftime of the short label under the axis
    per: str  # what one bar covers, for people
    length_words: str  # the span's length, for people: "vs previous 24 h" (a no-break space: one line)

    def start(self, now: datetime) -> datetime:
        floor = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        if self.step >= timedelta(days=1):
            floor = floor.replace(hour=0)
        return floor - self.step * (self.count - 1)

    def end(self, now: datetime) -> datetime:
        return self.start(now) + self.step * self.count

    def moments(self, now: datetime) -> list[datetime]:
        start = self.start(now)
        return [start + self.step * i for i in range(self.count)]

    def previous(self, now: datetime) -> tuple[datetime, datetime]:
        """The period the span is compared with: as long as the part of the span gone by, one span
        earlier (at 14:30, the last 24 hours began yesterday at 15:00; the previous 24 hours are
        from 15:00 the day before to 14:30 yesterday)."""
        length = self.step * self.count
        return self.start(now) - length, now - length


SPANS = {
    "24h": Span(
        key="24h",
        title="Last 24 hours",
        step=timedelta(hours=1),
        count=24,
        pattern="%Y-%m-%dT%H:00Z",
        pg_pattern='YYYY-MM-DD"T"HH24":00Z"',
        tick="%H:00",
        per="per hour",
        length_words="24\u00a0h",
    ),
    "7d": Span(
        key="7d",
        title="Last 7 days",
        step=timedelta(days=1),
        count=7,
        pattern="%Y-%m-%d",
        pg_pattern="YYYY-MM-DD",
        tick="%a %d",
        per="per day",
        length_words="7\u00a0days",
    ),
    "30d": Span(
        key="30d",
        title="Last 30 days",
        step=timedelta(days=1),
        count=30,
        pattern="%Y-%m-%d",
        pg_pattern="YYYY-MM-DD",
        tick="%b %d",
        per="per day",
        length_words="30\u00a0days",
    ),
}
DEFAULT_SPAN = "30d"


def span_for(key: str | None) -> Span:
    """The span a `?range=` asks for; anything else gets the default rather than an error page."""
    return SPANS.get(key or "", SPANS[DEFAULT_SPAN])


@dataclass
class TierUsage:
    """One model tier's calls, tokens and spend (nano-USD), one integer per bucket."""

    model_tier: str
    calls: list[int]
    tokens: list[int]
    spend_nusd: list[int]

    @classmethod
    def zero(cls, model_tier: str, buckets: int) -> TierUsage:
        return cls(model_tier, [0] * buckets, [0] * buckets, [0] * buckets)

    def total(self, measure: str) -> int:
        return sum(getattr(self, measure))


@dataclass(frozen=True)
class Usage:
    span: Span
    buckets: list[str]  # keys, as data-bucket shows them: 2026-11-20 or 2026-11-20T14:00Z
    ticks: list[str]  # short labels, one per bucket
    tiers: list[TierUsage]  # model tiers with usage in the span, in MODEL_TIERS order

    @property
    def empty(self) -> bool:
        return not self.tiers

    def total(self, measure: str) -> int:
        return sum(tier.total(measure) for tier in self.tiers)


def _bucket(dialect: str, span: Span, moment: SQLColumnExpression[datetime]) -> ColumnElement[str]:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", moment), span.pg_pattern)
    return func.strftime(span.pattern, moment)  # SQLite keeps naive UTC text


def _served_in(project_id: int, span: Span, now: datetime) -> ColumnElement[bool]:
    return (
        (UsageRecord.project_id == project_id)
        & (UsageRecord.status == 200)
        & (UsageRecord.created_at >= span.start(now))
        & (UsageRecord.created_at < span.end(now))
    )


def _tier_order(model_tier: str) -> tuple[int, str]:
    known = MODEL_TIERS.index(model_tier) if model_tier in MODEL_TIERS else len(MODEL_TIERS)
    return known, model_tier


def usage(session: Session, project_id: int, span: Span, now: datetime) -> Usage:
    """Calls, tokens and spend per model tier and bucket, summed by the database in one statement."""
    bucket = _bucket(session.get_bind().dialect.name, span, UsageRecord.created_at).label("bucket")
    rows = session.execute(
        select(
            bucket,
            UsageRecord.model_tier,
            func.count(),
            func.coalesce(func.sum(UsageRecord.total_tokens), 0),
            func.coalesce(func.sum(UsageRecord.cost_nusd), 0),
        )
        .where(_served_in(project_id, span, now))
        .group_by(bucket, UsageRecord.model_tier)
    )
    moments = span.moments(now)
    keys = [m.strftime(span.pattern) for m in moments]
    place = {key: i for i, key in enumerate(keys)}
    tiers: dict[str, TierUsage] = {}
    for key, model_tier, calls, tokens, spend in rows:
        series = tiers.setdefault(model_tier, TierUsage.zero(model_tier, len(keys)))
        i = place[key]
        # PostgreSQL sums bigints as numeric: int() keeps them exact integers.
        series.calls[i], series.tokens[i], series.spend_nusd[i] = int(calls), int(tokens), int(spend)
    ordered = [tiers[name] for name in sorted(tiers, key=_tier_order)]
    return Usage(span, keys, [m.strftime(span.tick) for m in moments], ordered)


@dataclass(frozen=True)
class TopCustomer:
    external_id: str
    name: str
    calls: int
    tokens: int
    spend_nusd: int


def top_customers(session: Session, project_id: int, span: Span, now: datetime) -> list[TopCustomer]:
    """The customers who spent most in the span; ties go to the lower customer_id, so the order is stable."""
    spend = func.coalesce(func.sum(UsageRecord.cost_nusd), 0).label("spend")
    rows = session.execute(
        select(
            Customer.external_id,
            Customer.name,
            func.count(),
            func.coalesce(func.sum(UsageRecord.total_tokens), 0),
            spend,
        )
        .select_from(UsageRecord)
        .join(Customer, Customer.id == UsageRecord.customer_id)
        .where(_served_in(project_id, span, now))
        .group_by(Customer.id, Customer.external_id, Customer.name)
        .order_by(spend.desc(), Customer.external_id)
        .limit(TOP)
    )
    return [
        TopCustomer(external_id, name, int(calls), int(tokens), int(cost))
        for external_id, name, calls, tokens, cost in rows
    ]


@dataclass(frozen=True)
class CodeRefusals:
    code: str
    counts: list[int]  # one per bucket


@dataclass(frozen=True)
class Refusals:
    """Refused calls of the project's customers per code and bucket, and the previous period's total
    (counts are kept long enough for every range's previous period: customers.refusals.KEPT)."""

    codes: list[CodeRefusals]  # codes refused in the span, in REFUSAL_CODES order
    previous: int

    @property
    def total(self) -> int:
        return sum(sum(c.counts) for c in self.codes)

    @property
    def empty(self) -> bool:
        return not self.codes


def _code_order(code: str) -> tuple[int, str]:
    known = REFUSAL_CODES.index(code) if code in REFUSAL_CODES else len(REFUSAL_CODES)
    return known, code


def refusals(session: Session, project_id: int, span: Span, now: datetime) -> Refusals:
    """Refusals per code and bucket in the span, and in all of the previous period: one statement.
    An hour's count belongs to the period its hour starts in."""
    start, end = span.start(now), span.end(now)
    before_start, before_end = span.previous(now)
    hour = RefusalCount.hour
    wanted = ((hour >= start) & (hour < end)) | ((hour >= before_start) & (hour < before_end))
    bucket = _bucket(session.get_bind().dialect.name, span, hour).label("bucket")
    rows = session.execute(
        select(bucket, RefusalCount.code, func.sum(RefusalCount.count))
        .join(Customer, Customer.id == RefusalCount.customer_id)
        .where(Customer.project_id == project_id, wanted)
        .group_by(bucket, RefusalCount.code)
    )
    moments = span.moments(now)
    place = {m.strftime(span.pattern): i for i, m in enumerate(moments)}
    codes: dict[str, CodeRefusals] = {}
    previous = 0
    for key, code, count in rows:
        if key in place:
            codes.setdefault(code, CodeRefusals(code, [0] * len(moments))).counts[place[key]] = int(count)
        else:
            previous += int(count)
    return Refusals([codes[code] for code in sorted(codes, key=_code_order)], previous)


Health = Literal["healthy", "probing", "resting"]


@dataclass(frozen=True)
class DeploymentState:
    model: str
    model_tier: str
    provider: str
    region: str
    upstream_model: str
    enabled: bool
    health: Health  # the shared view (every worker's and node's, with Redis)
    in_flight: int


# The shared view's states, as the dashboard words them.
WORDS: dict[str, Health] = {"healthy": "healthy", "unhealthy": "resting", "probing": "probing"}


def deployments(session: Session, project_id: int, health: DeploymentsHealth) -> list[DeploymentState]:
    """Every deployment of the project's models with its health, in one statement."""
    rows = session.execute(
        select(Model.name, Model.model_tier, Deployment)
        .join(Deployment, Deployment.model_id == Model.id)
        .where(Model.project_id == project_id)
        .order_by(Model.name, Deployment.id)
    )
    states = []
    for name, model_tier, d in rows:
        view = health.view(d.id)
        states.append(
            DeploymentState(
                name,
                model_tier,
                d.provider,
                d.region,
                d.upstream_model,
                d.enabled,
                WORDS[view.state],
                view.in_flight,
            )
        )
    return states
