"""The ordered admission checks of SPEC 3.2, ahead of every forwarded call.

1 key and body, 2 customer, 3 blocked, 4 shedding, 5 model, 6 period rollover, 7 rate limits,
8 tier limits and budgets, 9 balance, 10 reservation, 11 region. Steps 4, 6, 7 and 8 arrive with
the usage-tier and shedding work; their places are marked below, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from app.db import write_transaction
from app.metering import estimate, key_budget
from app.metering.accounts import open_account
from app.metering.allowance import (
    LimitReached,
    Scope,
    Share,
    note,
    own_budget_start,
    scopes,
    spent,
    take,
    take_what_remains,
)
from app.metering.key_budget import KeyHold
from app.metering.pricing import usd_str
from app.metering.quota import Ask, Hold, PeriodEnded, QuotaRefused, customers, reserve
from app.metering.rollover import Due, roll_over
from app.metering.settlement import release
from app.metering.shedding import MANUAL, MANUAL_RETRY_AFTER_S, projects, refusal, sheds
from app.proxy.auth import Caller, ModelInfo, TierInfo
from app.proxy.autoshed import OFF, AutoLevel, by_capacity, by_health, combined
from app.proxy.errors import ProxyError
from app.proxy.formats import route
from app.proxy.formats.bridge import Bridge
from app.proxy.formats.format import Format
from app.proxy.health import NO_FLIGHT, Flight, Health
from app.proxy.providers import PROVIDERS
from app.proxy.providers.deployment import DeploymentInfo
from app.proxy.ratelimit import Limiter, LimitsUnavailable, RateLimited, Ticket
from app.proxy.routing import in_regions

MAX_ID = 256
NO_TICKET = Ticket()
HOLD_GRACE = timedelta(minutes=10)
EXPIRY_STEP, ZERO = timedelta(minutes=1), timedelta(0)
LIMITS_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Who:
    customer_id: str | None
    name: str | None


@dataclass
class Admitted:
    caller: Caller
    who: Who
    model: ModelInfo  # the model served (restrict may have replaced the one asked for)
    hold: Hold | None
    deployments: list[DeploymentInfo]
    prompt: estimate.PromptEstimate
    requested: str
    share: Share | None = None
    restricted_from: str | None = None  # the model tier a restriction moved the call away from
    ticket: Ticket = field(default_factory=Ticket)
    tpm: int | None = None  # the tier's tokens-per-minute limit, counted after settlement
    key_hold: KeyHold | None = None  # what the call holds of its key's $ budget
    key_ticket: Ticket = field(default_factory=Ticket)  # the key's own rate limits
    share_capped: bool = False  # hard_cap holds the upstream to the period share's completion
    flight: Flight = NO_FLIGHT  # the call counted in its project's calls in flight (capacity)
    probe: DeploymentInfo | None = None  # a rested deployment this call holds the probe of
    auto: AutoLevel = OFF  # the automatic shedding level this call was admitted under
    # The completion tokens its hold covers: the limit a translation must send when the call gives
    # none. None for a project-level call that gave none: the default tier's reserve, read if needed.
    completion: int | None = None

    def rate_key(self) -> str:
        return rate_key(self.caller, self.who)

    def completion_cap(self) -> int | None:
        """hard_cap's completion limit for the upstream: what the balance and the period share allow."""
        caps = []
        if self.hold is not None and self.hold.completion_cap is not None:
            caps.append(self.hold.completion_cap)
        shrunk = self.share is not None and self.share.tokens < (self.hold.tokens if self.hold else 0)
        if self.share is not None and (self.share_capped or shrunk):
            # What the share holds: shrunk by take_what_remains, or the full share of a postpaid
            # hard-capped tier, whose limits and $ budget hold no more than that.
            caps.append(self.share.tokens - self.prompt.upper)
        if self.key_hold is not None and self.key_hold.completion_cap is not None:
            caps.append(self.key_hold.completion_cap)  # the last call its key's budget pays for
        return min(caps) if caps else None


def _string_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID:
        raise ProxyError(
            "invalid_request",
            f"{field} must be a non-empty string of at most {MAX_ID} characters.",
            param=field,
        )
    if not value.isprintable():  # NUL, newlines, tabs: no store or header can carry them faithfully
        raise ProxyError("invalid_request", f"{field} must not contain control characters.", param=field)
    return value


def identify(body: dict, headers, fields: tuple[str, ...] = ("user",)) -> Who:
    """SPEC 3.1: body `customer`, then Tollgate's and LiteLLM's headers, then body `user` (in
    the Responses API, or `safety_identifier`: `fields`), then `metadata.user_id` or
    `litellm_metadata.user`."""
    given = body.pop("customer", None)
    litellm_metadata = body.pop("litellm_metadata", None)  # LiteLLM's own field: no upstream knows it
    if given is not None:
        if not isinstance(given, dict) or "customer_id" not in given:
            raise ProxyError(
                "invalid_request", "customer must be an object with a customer_id.", param="customer"
            )
        name = given.get("customer_name")
        return Who(
            _string_id(given["customer_id"], "customer.customer_id"),
            _string_id(name, "customer.customer_name") if name is not None else None,
        )
    header = headers.get("X-Customer-Id")
    if header:
        name = headers.get("X-Customer-Name")
        return Who(_string_id(header, "X-Customer-Id"), _string_id(name, "X-Customer-Name") if name else None)
    for litellm in ("x-litellm-customer-id", "x-litellm-end-user-id"):
        if headers.get(litellm):
            return Who(_string_id(headers[litellm], litellm), None)
    for name in fields:
        if body.get(name) is not None:
            return Who(_string_id(body[name], name), None)
    # Anthropic's metadata.user_id (which LiteLLM also reads), then LiteLLM's litellm_metadata.user.
    for holder, name, given in (
        ("metadata", "user_id", body.get("metadata")),
        ("litellm_metadata", "user", litellm_metadata),
    ):
        if isinstance(given, dict) and given.get(name) is not None:
            return Who(_string_id(given[name], f"{holder}.{name}"), None)
    return Who(None, None)


def _open_if_missing(engine: Engine, caller: Caller, who: Who, now: datetime) -> None:
    assert who.customer_id is not None
    defaults = caller.project.defaults
    tier = caller.tier(defaults.tier_id)  # its period as it stands, even if edited a moment ago
    if tier is not None:
        defaults = replace(defaults, tier_rules=tier.rules)
    with write_transaction(engine) as conn:
        open_account(conn, defaults, who.customer_id, who.name, now, source="proxy", calling=True)


def _refuse_unknown_model(engine: Engine, caller: Caller, who: Who, model: str, now: datetime) -> ProxyError:
    """An unknown model still resolves the customer first, and a blocked one hears that first."""
    if who.customer_id is not None:
        _open_if_missing(engine, caller, who, now)
        with engine.connect() as conn:
            state = conn.execute(
                select(customers.c.blocked, customers.c.shedding_tier, MANUAL.label("level")).where(
                    customers.c.project_id == caller.project.id, customers.c.external_id == who.customer_id
                ),
                {"b_project": caller.project.id},
            ).first()
        if state is not None and state.blocked:
            return ProxyError("customer_blocked", f"Customer {who.customer_id} is blocked.")
        if state is not None and sheds(state.level, state.shedding_tier):  # step 4 comes before 5
            return shed_error(state.shedding_tier, state.level, MANUAL_RETRY_AFTER_S)
    return ProxyError(
        "model_not_found",
        f"The model '{model}' does not exist or you do not have access to it.",
        param="model",
    )


def admit(
    engine: Engine,
    limiter: Limiter,
    health: Health,
    caller: Caller,
    body: dict,
    headers,
    fmt: Format,
    now: datetime,
) -> Admitted:
    who = identify(body, headers, fmt.customer_fields)
    try:
        return _admit(engine, limiter, health, caller, who, body, fmt, now)
    except ProxyError as refused:  # counted against the customer (SPEC 5.5)
        refused.customer_id, refused.model = who.customer_id, body.get("model")
        raise


def _admit(
    engine: Engine,
    limiter: Limiter,
    health: Health,
    caller: Caller,
    who: Who,
    body: dict,
    fmt: Format,
    now: datetime,
) -> Admitted:
    if who.customer_id is None and caller.project.require_customer:
        raise ProxyError(
            "customer_required",
            "This project requires a customer: send customer.customer_id, X-Customer-Id or user.",
            param="customer",
        )
    model = caller.project.models.get(body["model"])
    if model is None:
        raise _refuse_unknown_model(engine, caller, who, body["model"], now)
    if not caller.may_use(model.name):
        raise ProxyError(
            "model_not_allowed", f"This key may not use the model '{model.name}'.", param="model"
        )
    plan = _plan(fmt, body, model)
    auto, flight, probe = _automatic(health, caller, model)
    try:
        if who.customer_id is None:  # project-level usage: metered, never stopped by a balance
            admitted = _admit_project_level(engine, limiter, caller, who, model, body, fmt, plan, now, auto)
        else:
            admitted = _admit_customer(engine, limiter, caller, who, model, body, fmt, plan, now, auto)
    except BaseException as refused:  # refused, or failed: nothing it took stays taken
        flight.release()
        if probe is not None:
            health.release_probe(probe.id)
        if isinstance(refused, ProxyError):
            refused.auto = auto
        raise
    admitted.flight, admitted.probe, admitted.auto = flight, probe, auto
    return admitted


def _automatic(
    health: Health, caller: Caller, model: ModelInfo
) -> tuple[AutoLevel, Flight, DeploymentInfo | None]:
    """SPEC 8's automatic level for this call's model, when the project turns it on. A deployment
    whose rest is over is probed by this call if it can take the probe (so shedding lifts once the
    upstream answers, whoever calls); the call is counted in the project's calls in flight when it
    has a capacity."""
    project = caller.project
    if not project.auto_shedding:
        return OFF, NO_FLIGHT, None
    probe = next(
        (d for d in model.deployments if health.probe_due(d.id) and health.take_probe(d.id, d.timeout_s)),
        None,
    )
    level = by_health(health, model.deployments, probe.id if probe else None)
    if project.capacity is None:
        return level, NO_FLIGHT, probe
    flying, flight = health.fly(f"flight:p:{project.id}")
    return combined(level, by_capacity(flying - 1, project.capacity)), flight, probe


def _admit_customer(
    engine: Engine,
    limiter: Limiter,
    caller: Caller,
    who: Who,
    model: ModelInfo,
    body: dict,
    fmt: Format,
    plan: Plan,
    now: datetime,
    auto: AutoLevel,
) -> Admitted:
    prompt = plan.prompt
    hold = _hold(engine, caller, who, model, body, fmt, prompt, now, auto)
    share, ticket, key_ticket, key_hold = None, NO_TICKET, NO_TICKET, None
    try:
        tier = caller.tier(hold.tier_id)
        ticket = _rate_limits(limiter, caller, who, tier)
        key_ticket = _key_rate_limits(limiter, caller)
        served, share, restricted = _allowance(engine, caller, who, tier, hold, model, prompt, now)
        if caller.key is not None and caller.key.budget:
            completion = (share.tokens if share is not None else hold.tokens) - prompt.upper
            hard_cap = tier.terms.hard_cap if tier is not None else True
            key_hold = _key_budget(engine, caller, served, prompt, completion, hard_cap, hold.choices, now)
        deployments = _route(served, hold.allowed_regions, fmt, plan.refused)
    except ProxyError:
        ticket.release()
        key_ticket.release()
        release(engine, hold, share, key_hold)
        raise
    tpm = tier.rules.tpm if tier is not None else None
    share_capped = share is not None and not share.overage and tier is not None and tier.terms.hard_cap
    return Admitted(
        caller,
        who,
        served,
        hold,
        deployments,
        prompt,
        model.name,
        share,
        restricted,
        ticket,
        tpm,
        key_hold,
        key_ticket,
        share_capped,
        completion=max(1, hold.tokens - prompt.upper),
    )


def _admit_project_level(
    engine: Engine,
    limiter: Limiter,
    caller: Caller,
    who: Who,
    model: ModelInfo,
    body: dict,
    fmt: Format,
    plan: Plan,
    now: datetime,
    auto: AutoLevel,
) -> Admitted:
    """No customer: the project's default shedding tier, and the key's own limits and budget."""
    _shed_project_level(engine, caller, auto)
    prompt = plan.prompt
    key_ticket, key_hold = _key_rate_limits(limiter, caller), None
    completion = fmt.completion(body)
    try:
        if caller.key is not None and caller.key.budget:
            if completion is None:
                completion = caller.terms_of(caller.project.defaults.tier_id).default_reserve_tokens
            choices = fmt.choices(body)
            key_hold = _key_budget(engine, caller, model, prompt, completion, True, choices, now)
        deployments = _route(model, (), fmt, plan.refused)
    except ProxyError:
        key_ticket.release()
        if key_hold is not None:
            release(engine, None, None, key_hold)
        raise
    return Admitted(
        caller,
        who,
        model,
        None,
        deployments,
        prompt,
        model.name,
        key_hold=key_hold,
        key_ticket=key_ticket,
        completion=completion,
    )


def _shed_project_level(engine: Engine, caller: Caller, auto: AutoLevel) -> None:
    """SPEC 3.2 step 4 for a call that names no customer: the project's default shedding tier
    against its manual level, read as it stands (SPEC 3.5), and the automatic one."""
    if caller.project.defaults.shedding_tier == "high":
        return  # never shed (a project setting: the snapshot's is current within a second)
    with engine.connect() as conn:
        row = conn.execute(
            select(projects.c.shedding_level, projects.c.default_shedding_tier).where(
                projects.c.id == caller.project.id
            )
        ).first()
    if row is None:
        return
    if sheds(row.shedding_level, row.default_shedding_tier):
        raise shed_error(row.default_shedding_tier, row.shedding_level, MANUAL_RETRY_AFTER_S)
    if sheds(auto.level, row.default_shedding_tier):
        raise shed_error(row.default_shedding_tier, auto.level, auto.retry_after, automatic=True)


def shed_error(shedding_tier: str, level: str, retry_after: int, automatic: bool = False) -> ProxyError:
    message = refusal(shedding_tier, level, automatic)
    return ProxyError("load_shed", message, headers={"Retry-After": str(max(1, retry_after))})


def _key_rate_limits(limiter: Limiter, caller: Caller) -> Ticket:
    """The key's own rpm, tpm and parallel calls (LiteLLM's virtual-key limits), on top of the tier's."""
    key = caller.key
    if key is None or not key.limited():
        return NO_TICKET
    try:
        return limiter.admit(key_rate_key(key.id), key.rpm, key.tpm, key.parallel)
    except LimitsUnavailable as down:
        raise _limits_unavailable(down) from down
    except RateLimited as limited:
        raise ProxyError(
            "rate_limit_exceeded", f"Key: {limited}", headers={"Retry-After": str(limited.retry_after)}
        ) from limited


def _key_budget(
    engine: Engine,
    caller: Caller,
    model: ModelInfo,
    prompt: estimate.PromptEstimate,
    completion: int,
    hard_cap: bool,
    choices: int,
    now: datetime,
) -> KeyHold | None:
    """The key's own $ budget, reserved like a tier's (SPEC 6.1, 5.1)."""
    assert caller.key is not None
    price = model.price

    def cost_of(tokens: int) -> int:
        return price.upper_cost_nusd(prompt.upper, tokens) if price else 0

    try:
        return key_budget.reserve(
            engine, caller.key.id, completion, cost_of, hard_cap, choices, now, _hold_expiry(model, now)
        )
    except key_budget.KeyBudgetExceeded as exceeded:
        raise ProxyError("budget_exceeded", str(exceeded)) from exceeded


def _rate_limits(limiter: Limiter, caller: Caller, who: Who, tier: TierInfo | None) -> Ticket:
    """SPEC 3.2 step 7: rpm, tpm and parallel calls of the customer's tier."""
    if tier is None:
        return NO_TICKET
    rules = tier.rules
    try:
        return limiter.admit(rate_key(caller, who), rules.rpm, rules.tpm, rules.parallel)
    except LimitsUnavailable as down:
        raise _limits_unavailable(down) from down
    except RateLimited as limited:
        raise ProxyError(
            "rate_limit_exceeded", str(limited), headers={"Retry-After": str(limited.retry_after)}
        ) from limited


def _limits_unavailable(down: LimitsUnavailable) -> ProxyError:
    return ProxyError(
        "limits_unavailable",
        "This call's rate limits cannot be checked right now (their shared store does not answer); "
        "try again shortly.",
        headers={"Retry-After": str(LIMITS_RETRY_AFTER_S)},
    )


def key_rate_key(key_id: int) -> str:
    return f"key:{key_id}"


def rate_key(caller: Caller, who: Who) -> str:
    return f"{caller.project.id}:{who.customer_id}"


@dataclass(frozen=True)
class Plan:
    """How a call may go out: its prompt estimate over every body it may go out as, and the
    translations that refused it (their deployments are left out)."""

    prompt: estimate.PromptEstimate
    refused: frozenset[Bridge] = frozenset()


def _serving(model: ModelInfo, fmt: Format, refused: frozenset[Bridge] = frozenset()) -> list[DeploymentInfo]:
    """The model's deployments that can serve a call in this format (natively or translated)."""
    serving = []
    for d in model.deployments:
        way = route(fmt, PROVIDERS[d.provider])
        if way is not None and way[1] not in refused:
            serving.append(d)
    if model.deployments and not serving:
        raise ProxyError(
            "invalid_request",
            f"The model '{model.name}' does not serve /v1/{fmt.endpoint} calls.",
            param="model",
        )
    return serving


def _plan(fmt: Format, body: dict, model: ModelInfo) -> Plan:
    """The prompt estimate over every body the call may go out as (SPEC 5.2): its own, and its
    translation for each kind of deployment that needs one. A translation that refuses the body
    leaves its deployments out; when none is left, the call is refused, before anything is held."""
    estimates = [fmt.prompt(body)]
    bridges = {way[1] for d in model.deployments if (way := route(fmt, PROVIDERS[d.provider]))}
    if bridges == {None}:  # every deployment speaks the call's format: nothing to translate
        return Plan(estimates[0])
    if not bridges and model.deployments:
        _serving(model, fmt)  # none can serve it: says why
    refused: dict[Bridge, ProxyError] = {}
    for bridge in bridges - {None}:
        assert bridge is not None
        try:
            estimates.append(bridge.upstream.prompt(bridge.request(body, 1)))
        except ProxyError as refusal:
            refused[bridge] = refusal
        except (TypeError, AttributeError, KeyError, ValueError) as exc:  # a shape no check foresaw
            refused[bridge] = ProxyError("invalid_request", f"The request could not be translated: {exc!r}")
    if refused and len(refused) == len(bridges - {None}) and None not in bridges:
        raise next(iter(refused.values()))  # no deployment can take it: say why
    prompt = estimates[0]
    if len(estimates) > 1:
        prompt = estimate.PromptEstimate(max(e.upper for e in estimates), max(e.likely for e in estimates))
    return Plan(prompt, frozenset(refused))


def _route(
    model: ModelInfo, regions: tuple[str, ...], fmt: Format, refused: frozenset[Bridge]
) -> list[DeploymentInfo]:
    deployments = in_regions(_serving(model, fmt, refused), regions)
    if not deployments:
        raise ProxyError(
            "region_not_allowed",
            f"Model '{model.name}' has no deployment in the customer's allowed regions "
            f"({', '.join(regions)}).",
        )
    return deployments


def _allowance(
    engine: Engine,
    caller: Caller,
    who: Who,
    tier: TierInfo | None,
    hold: Hold,
    model: ModelInfo,
    prompt: estimate.PromptEstimate,
    now: datetime,
) -> tuple[ModelInfo, Share | None, str | None]:
    """SPEC 3.2 step 8: the tier's limits and budgets for this model; on_limit decides when full.

    Returns the model to serve, the period share taken, and the model tier restricted from.
    """
    if tier is None or hold.period_start is None:
        return model, None, None
    rules = tier.rules
    want = _share(caller, who, tier, hold, model, prompt, now)
    if not want.scopes:
        return model, None, None
    try:
        return model, _take(engine, tier, want, prompt, model, hold.choices), None
    except LimitReached as full:
        refusal = full
    if rules.on_limit == "allow":
        return model, take(engine, replace(want, overage=True), enforce=False), None
    if rules.on_limit == "restrict":
        target = caller.project.models.get(caller.project.tier_defaults.get(rules.restrict_to or "", ""))
        if target is not None and target.name != model.name and caller.may_use(target.name):
            instead = _share(caller, who, tier, hold, target, prompt, now)
            try:
                taken = _take(engine, tier, instead, prompt, target, hold.choices) if instead.scopes else None
            except LimitReached as again:
                refusal = again
            else:
                return target, taken, model.model_tier
    raise _refusal(engine, want, refusal.scope, now)


def _take(
    engine: Engine,
    tier: TierInfo,
    want: Share,
    prompt: estimate.PromptEstimate,
    model: ModelInfo,
    choices: int,
) -> Share:
    """The full share; with hard_cap, else the largest completion that still fits (SPEC 5.1)."""
    try:
        return take(engine, want, enforce=True)
    except LimitReached as full:
        if not tier.terms.hard_cap or tier.rules.on_limit == "allow":
            raise  # allow serves past the limit as overage: nothing to shrink for
        price = model.price

        def cost_of(completion: int) -> int:
            return price.upper_cost_nusd(prompt.upper, completion) if price else 0

        return take_what_remains(engine, want, full, prompt.upper, cost_of, choices)


def _share(
    caller: Caller,
    who: Who,
    tier: TierInfo,
    hold: Hold,
    model: ModelInfo,
    prompt: estimate.PromptEstimate,
    now: datetime,
) -> Share:
    cost = model.price.upper_cost_nusd(prompt.upper, hold.tokens - prompt.upper) if model.price else 0
    assert who.customer_id is not None and hold.period_start is not None
    own_start = None
    if hold.max_budget_nusd is not None:
        own_start = own_budget_start(hold.budget_duration, hold.budget_set_at or hold.period_start, now)
    return Share(
        customer_pk=hold.customer_pk,
        external_id=who.customer_id,
        project_id=caller.project.id,
        tier_id=tier.id,
        period_start=hold.period_start,
        scopes=scopes(tier.rules, model.model_tier, model.name, hold.max_budget_nusd, own_start),
        tokens=hold.tokens,
        nusd=cost,
        overage=False,
    )


def _refusal(engine: Engine, want: Share, scope: Scope, now: datetime) -> ProxyError:
    """Block: say which limit, and record it once per scope and period."""
    if scope.refusal == "usage_limit_reached":
        with write_transaction(engine) as conn:
            note(conn, want, scope, "usage.limit_reached", "limit", now, {"refused": True})
        return ProxyError(
            scope.refusal,
            f"Usage limit reached for {scope.name} models in this period (customer {want.external_id}).",
        )
    spend, budget = usd_str(spent(engine, want, scope)), usd_str(scope.nusd or 0)
    with write_transaction(engine) as conn:
        data = {"refused": True, "spend_usd": spend, "max_budget_usd": budget}
        note(conn, want, scope, "budget.exceeded", "exceeded", now, data)
    # LiteLLM's wording, so clients migrating from it recognise the refusal.
    message = f"ExceededBudget: End User={want.external_id} over budget. Spend={spend}, Budget={budget}"
    return ProxyError(scope.refusal, message)


def _hold(
    engine: Engine,
    caller: Caller,
    who: Who,
    model: ModelInfo,
    body: dict,
    fmt: Format,
    prompt: estimate.PromptEstimate,
    now: datetime,
    auto: AutoLevel,
) -> Hold:
    assert who.customer_id is not None
    ask = Ask(
        caller.project.id,
        who.customer_id,
        prompt.upper,
        fmt.completion(body),
        now,
        _hold_expiry(model, now),
        fmt.choices(body),
        auto_level=auto.level,
        auto_retry_after=auto.retry_after,
    )
    try:
        for _ in range(3):
            try:
                hold = reserve(engine, ask, caller.terms_of)
            except PeriodEnded as ended:
                _roll_over(engine, caller, who, ended.state, now)
                continue
            if hold is not None:
                return hold
            _open_if_missing(engine, caller, who, now)
    except QuotaRefused as refused:
        headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else None
        raise ProxyError(refused.code, refused.message, headers=headers) from refused
    raise ProxyError("invalid_request", f"Customer {who.customer_id} could not be created.")


def _hold_expiry(model: ModelInfo, now: datetime) -> datetime:
    """When the scheduler may free a call's holds: past the longest timeout of the model's
    deployments, plus a grace (SPEC 5.1), unless a stream keeps them.

    Rounded up to the minute: the customer's expiry is the latest of its calls', and an indexed
    column. Calls in the same minute then leave it as it is, so their holds change no index
    (on PostgreSQL a HOT update, no new index entries) and free nothing sooner.
    """
    timeout = max((d.timeout_s for d in model.deployments), default=600)
    exact = now + timedelta(seconds=timeout) + HOLD_GRACE
    return exact.replace(second=0, microsecond=0) + (
        EXPIRY_STEP if exact.second or exact.microsecond else ZERO
    )


def _roll_over(engine: Engine, caller: Caller, who: Who, state, now: datetime) -> None:
    """SPEC 3.2 step 6: the customer's period ended; start the new one (and replenish) first."""
    tier = caller.tier(state.tier_id)
    if tier is None:
        return
    due = Due(
        state.id,
        caller.project.id,
        who.customer_id or "",
        state.tier_id,
        state.period_start,
        state.tier_assigned_at,
    )
    roll_over(engine, due, tier.rules, now, source="proxy")
