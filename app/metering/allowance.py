"""A tier's period allowance: calls and tokens per model tier, and $ budgets (SPEC 4, 3.2 step 8).

Counters live in `period_counters`, one row per (customer, period start, scope). A call takes its
share (`reserved_*`) with one conditional UPDATE per scope inside one transaction, so no two calls
can take the same room; settlement turns the share into use. Tiers without limits or budgets have
no scopes and cost nothing here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, cast

from sqlalchemy import Connection, Engine, Table, and_, case, or_, select, update

from app.db import insert_ignoring_conflict, iso, write_transaction
from app.events import recorder
from app.metering import periods
from app.metering.pricing import usd_str
from app.models.usage import PeriodCounter

if TYPE_CHECKING:
    from app.models.tier import UsageTier

counters = cast(Table, PeriodCounter.__table__)
TOTAL = "total"


@dataclass(frozen=True)
class Limit:
    calls: int | None
    tokens: int | None


@dataclass(frozen=True)
class TierRules:
    """The period, replenishment, limits, budgets and rate limits of one tier version."""

    period: periods.Period
    anchor: str
    replenish_tokens: int | None = None
    replenish_mode: str = "reset"
    max_balance: int | None = None
    limits: dict[str, Limit] = field(default_factory=dict)
    on_limit: str = "block"
    restrict_to: str | None = None
    max_budget_nusd: int | None = None
    soft_budget_nusd: int | None = None
    model_budgets_nusd: dict[str, int] = field(default_factory=dict)
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None


def rules_of(tier: UsageTier) -> TierRules:
    return TierRules(
        period=periods.parse(tier.period),
        anchor=tier.anchor,
        replenish_tokens=tier.replenish_tokens,
        replenish_mode=tier.replenish_mode,
        max_balance=tier.max_balance,
        limits={k: Limit(v.get("calls"), v.get("tokens")) for k, v in (tier.limits or {}).items()},
        on_limit=tier.on_limit,
        restrict_to=tier.restrict_to,
        max_budget_nusd=tier.max_budget_nusd,
        soft_budget_nusd=tier.soft_budget_nusd,
        model_budgets_nusd=dict(tier.model_budgets_nusd or {}),
        rpm=tier.rpm_limit,
        tpm=tier.tpm_limit,
        parallel=tier.max_parallel_requests,
    )


@dataclass(frozen=True)
class Scope:
    """One counter a call draws on, with its hard limits (None = unlimited)."""

    name: str
    calls: int | None = None
    tokens: int | None = None
    nusd: int | None = None
    soft_nusd: int | None = None
    start: datetime | None = None  # its own period's start (a customer's own budget); else the tier's

    @property
    def refusal(self) -> str:
        """The SPEC 3.3 code when this scope has no room left."""
        return (
            "usage_limit_reached" if self.calls is not None or self.tokens is not None else "budget_exceeded"
        )


CUSTOMER = "customer"


def scopes(
    rules: TierRules,
    model_tier: str,
    model: str,
    own_budget_nusd: int | None = None,
    own_start: datetime | None = None,
) -> tuple[Scope, ...]:
    """What a call to `model` (of `model_tier`) counts against under these rules.

    `own_budget_nusd` is a customer's own $ budget (LiteLLM's customer max_budget): it applies on
    top of the tier's, over its own period (starting at `own_start`), and never changes the tier.
    """
    found = []
    limit = rules.limits.get(model_tier)
    if limit is not None and (limit.calls is not None or limit.tokens is not None):
        found.append(Scope(model_tier, calls=limit.calls, tokens=limit.tokens))
    if rules.max_budget_nusd is not None or rules.soft_budget_nusd is not None:
        found.append(Scope(TOTAL, nusd=rules.max_budget_nusd, soft_nusd=rules.soft_budget_nusd))
    if model in rules.model_budgets_nusd:
        found.append(Scope(f"model:{model}", nusd=rules.model_budgets_nusd[model]))
    if own_budget_nusd is not None:
        found.append(Scope(CUSTOMER, nusd=own_budget_nusd, start=own_start))
    return tuple(found)


def own_budget_window(
    duration: str | None, set_at: datetime, now: datetime
) -> tuple[datetime, datetime | None]:
    """The [start, end) of an own budget's current period (a customer's or a key's): windows of
    `duration` from when it was set; without a duration it never resets (SPEC 4, 6.1)."""
    return periods.window(periods.parse(duration or periods.NONE), periods.ASSIGNMENT, set_at, now)


def own_budget_start(duration: str | None, set_at: datetime, now: datetime) -> datetime:
    return own_budget_window(duration, set_at, now)[0]


def spent(engine: Engine, share: Share, scope: Scope) -> int:
    """What the period has spent in a scope (for the refusal message)."""
    with engine.connect() as conn:
        value = conn.execute(select(counters.c.spend_nusd).where(*_key(share, scope))).scalar()
    return int(value or 0)


class LimitReached(Exception):
    def __init__(self, scope: Scope):
        super().__init__(scope.name)
        self.scope = scope


@dataclass(frozen=True)
class Share:
    """What one call took from its period counters."""

    customer_pk: int
    external_id: str
    project_id: int
    tier_id: int
    period_start: datetime
    scopes: tuple[Scope, ...]
    tokens: int
    nusd: int
    overage: bool


def _start(share: Share, scope: Scope) -> datetime:
    return scope.start or share.period_start


def _key(share: Share, scope: Scope) -> list:
    """The one counter row of this scope in its current period."""
    return [
        counters.c.customer_id == share.customer_pk,
        counters.c.period_start == _start(share, scope),
        counters.c.scope == scope.name,
    ]


def _room(scope: Scope, tokens: int, nusd: int) -> list:
    checks = []
    if scope.calls is not None:
        checks.append(counters.c.calls + counters.c.reserved_calls + 1 <= scope.calls)
    if scope.tokens is not None:
        checks.append(counters.c.tokens + counters.c.reserved_tokens + tokens <= scope.tokens)
    if scope.nusd is not None:
        checks.append(counters.c.spend_nusd + counters.c.reserved_nusd + nusd <= scope.nusd)
    return checks


def take(engine: Engine, want: Share, enforce: bool) -> Share:
    """Take the call's share of every scope at once, or nothing (LimitReached names the first full one).

    `enforce=False` takes it regardless of the limits: on_limit `allow` (the share is then overage).
    """
    with write_transaction(engine) as conn:
        for scope in want.scopes:
            checks = _room(scope, want.tokens, want.nusd) if enforce else []
            stmt = (
                update(counters)
                .where(*_key(want, scope), *checks)
                .values(
                    reserved_calls=counters.c.reserved_calls + 1,
                    reserved_tokens=counters.c.reserved_tokens + want.tokens,
                    reserved_nusd=counters.c.reserved_nusd + want.nusd,
                )
            )
            if conn.execute(stmt).rowcount == 1:
                continue
            _open(conn, want, scope)  # the first call of the period creates the row (or waits for who did)
            if conn.execute(stmt).rowcount == 1:
                continue
            raise LimitReached(scope)  # leaves the transaction: every share taken above is undone
    return want


def take_what_remains(
    engine: Engine,
    want: Share,
    full: LimitReached,
    prompt: int,
    cost_of: Callable[[int], int],
    choices: int = 1,
) -> Share:
    """hard_cap (SPEC 5.1): the full share did not fit; take the largest completion that does.

    A calls limit leaves nothing to shrink. Otherwise the completion shrinks to what the tightest
    token limit and $ budget still allow; below one completion token per choice the call is refused.
    """
    if full.scope.calls is not None and _standing_calls(engine, want, full.scope) >= full.scope.calls:
        raise full
    completion = want.tokens - prompt
    with engine.connect() as conn:
        rows = {
            scope.name: conn.execute(select(counters).where(*_key(want, scope))).first()
            for scope in want.scopes
        }
    for scope in want.scopes:
        row = rows[scope.name]
        used_tokens = (row.tokens + row.reserved_tokens) if row else 0
        used_nusd = (row.spend_nusd + row.reserved_nusd) if row else 0
        if scope.tokens is not None:
            completion = min(completion, scope.tokens - used_tokens - prompt)
        if scope.nusd is not None:
            completion = min(completion, affordable(scope.nusd - used_nusd, completion, cost_of))
    if completion < choices:
        raise full
    return take(engine, replace(want, tokens=prompt + completion, nusd=cost_of(completion)), enforce=True)


def affordable(budget_left: int, most: int, cost_of: Callable[[int], int]) -> int:
    """The largest completion (at most `most`) whose cost with the prompt fits the budget left."""
    low, high = 0, most
    if cost_of(0) > budget_left:
        return 0
    while low < high:  # costs rise with the completion: bisect
        mid = (low + high + 1) // 2
        low, high = (mid, high) if cost_of(mid) <= budget_left else (low, mid - 1)
    return low


def _standing_calls(engine: Engine, want: Share, scope: Scope) -> int:
    with engine.connect() as conn:
        row = conn.execute(
            select(counters.c.calls + counters.c.reserved_calls).where(*_key(want, scope))
        ).first()
    return row[0] if row else 0


def _open(conn: Connection, want: Share, scope: Scope) -> None:
    """Create the scope's counter row for this period, unless it exists."""
    values = dict(
        customer_id=want.customer_pk,
        tier_id=want.tier_id,
        period_start=_start(want, scope),
        scope=scope.name,
        calls=0,
        tokens=0,
        spend_nusd=0,
        overage_calls=0,
        overage_tokens=0,
        reserved_calls=0,
        reserved_tokens=0,
        reserved_nusd=0,
    )
    insert_ignoring_conflict(conn, counters, values, ["customer_id", "period_start", "scope"])


def _unreserve(share: Share) -> dict:
    def down(column, amount):
        return case((column >= amount, column - amount), else_=0)

    return dict(
        reserved_calls=down(counters.c.reserved_calls, 1),
        reserved_tokens=down(counters.c.reserved_tokens, share.tokens),
        reserved_nusd=down(counters.c.reserved_nusd, share.nusd),
    )


@dataclass(frozen=True)
class Standing:
    """A scope's counters right after a call settled, and what that call added."""

    scope: Scope
    calls: int
    tokens: int
    spend_nusd: int
    added_tokens: int
    added_nusd: int
    overage_calls: int


def use(conn: Connection, share: Share, tokens: int, nusd: int) -> list[Standing]:
    """Turn the share into use (inside the settlement's transaction)."""
    out = []
    for scope in share.scopes:
        row = conn.execute(
            update(counters)
            .where(*_key(share, scope))
            .values(
                calls=counters.c.calls + 1,
                tokens=counters.c.tokens + tokens,
                spend_nusd=counters.c.spend_nusd + nusd,
                overage_calls=counters.c.overage_calls + (1 if share.overage else 0),
                overage_tokens=counters.c.overage_tokens + (tokens if share.overage else 0),
                **_unreserve(share),
            )
            .returning(counters.c.calls, counters.c.tokens, counters.c.spend_nusd, counters.c.overage_calls)
        ).first()
        if row is not None:
            out.append(
                Standing(scope, row.calls, row.tokens, row.spend_nusd, tokens, nusd, row.overage_calls)
            )
    return out


def give_back(conn: Connection, share: Share) -> None:
    """Return an unused share (the call failed before anything was served)."""
    rows = or_(*(and_(*_key(share, scope)) for scope in share.scopes))
    conn.execute(update(counters).where(rows).values(**_unreserve(share)))


def _crossed(before: int, after: int, threshold: int | None) -> bool:
    return threshold is not None and before < threshold <= after


def crossings(share: Share, standing: Standing) -> list[tuple[str, str, dict[str, object]]]:
    """(event type, dedupe name, data) for each threshold this call's use crossed (SPEC 7.1)."""
    scope = standing.scope
    out: list[tuple[str, str, dict[str, object]]] = []
    spent_before = standing.spend_nusd - standing.added_nusd
    if _crossed(standing.calls - 1, standing.calls, scope.calls) or _crossed(
        standing.tokens - standing.added_tokens, standing.tokens, scope.tokens
    ):
        out.append(("usage.limit_reached", "limit", {"calls": standing.calls, "tokens": standing.tokens}))
    if share.overage and standing.overage_calls == 1:
        out.append(("usage.overage_started", "overage", {"calls": standing.calls, "tokens": standing.tokens}))
    if scope.nusd is not None:
        for percent in (85, 95):
            if _crossed(spent_before, standing.spend_nusd, scope.nusd * percent // 100):
                out.append(
                    (
                        "budget.threshold_crossed",
                        f"budget{percent}",
                        {"percent": percent, "max_budget_usd": usd_str(scope.nusd)},
                    )
                )
        if _crossed(spent_before, standing.spend_nusd, scope.nusd):
            out.append(("budget.exceeded", "exceeded", {"max_budget_usd": usd_str(scope.nusd)}))
    if _crossed(spent_before, standing.spend_nusd, scope.soft_nusd):
        out.append(("budget.threshold_crossed", "soft", {"soft_budget_usd": usd_str(scope.soft_nusd or 0)}))
    return out


def announce(conn: Connection, share: Share, standings: list[Standing], now: datetime) -> None:
    """Record the events this call's use crossed, each once per scope and period."""
    for standing in standings:
        for kind, name, data in crossings(share, standing):
            note(
                conn,
                share,
                standing.scope,
                kind,
                name,
                now,
                dict(data, spend_usd=usd_str(standing.spend_nusd)),
            )


def note(
    conn: Connection, share: Share, scope: Scope, kind: str, name: str, now: datetime, data: dict
) -> None:
    recorder.record(
        conn,
        project_id=share.project_id,
        type=kind,
        now=now,
        customer_pk=share.customer_pk,
        customer_external_id=share.external_id,
        data={
            "customer_id": share.external_id,
            "scope": scope.name,
            "period_start": iso(_start(share, scope)),
            **data,
        },
        dedupe_key=f"{name}:{share.customer_pk}:{iso(_start(share, scope))}:{scope.name}",
    )
