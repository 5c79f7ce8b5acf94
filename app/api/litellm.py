"""LiteLLM-compatible customer and budget routes (SPEC 6.1, reference/litellm-api.md).

Same paths, bodies and response fields as LiteLLM's proxy, mapped onto Tollgate:
- a LiteLLM *budget* is a usage tier: `budget_id` is the tier key, the budget row shows the key's
  latest version; budgets made here are not prepaid (`prepaid: false`);
- a LiteLLM *customer* (end user) is a Tollgate customer: `user_id` is its customer_id. A
  customer-level `max_budget` is stored on the customer (`max_budget_nusd`), never on a tier.

Unlike LiteLLM: `blocked: false` and `max_budget: 0` are honoured, unblock really unblocks, and
`/budget/update` of a tier customers have used clones it and migrates its customers to the new
version, so the old version (and its history) is kept.

Errors answer the LiteLLM way: `{"error": {"message", "type", "param", "code": "<status>"}}`.
Every write accepts an `Idempotency-Key` header, as the rest of the management API (SPEC 6).
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from typing import Any

from flask import Response, current_app, g
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields, validate
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from app import stamp
from app.api.auth import require_admin
from app.api.errors import ApiError
from app.api.idempotency import idempotent
from app.customers import operations as ops
from app.db import iso, now_utc, session_writes
from app.errors import Conflict, DomainError, NotFound
from app.extensions import db
from app.metering import periods
from app.metering.pricing import MoneyError, to_nusd, to_usd, usd_str
from app.models.catalog import Model
from app.models.customer import Customer
from app.models.project import Project
from app.models.tier import UsageTier
from app.models.usage import PeriodCounter, UsageRecord
from app.tiers.operations import clone_tier, create_tier, edit_tier, latest_version
from app.tiers.spec import KEY, tier_spec, tier_values

bp = Blueprint("litellm", __name__, description="LiteLLM-compatible customer and budget API")
bp.before_request(require_admin)

SOURCE = "api"
REGIONS = ("eu", "us")
TYPES = {
    400: "bad_request",
    401: "auth_error",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    500: "internal_server_error",
}
# Tier fields named in domain errors, as the LiteLLM field they come from.
LITELLM_FIELDS = {
    "key": "budget_id",
    "period": "budget_duration",
    "max_budget_usd": "max_budget",
    "soft_budget_usd": "soft_budget",
    "model_budgets_usd": "model_max_budget",
    "customer_id": "user_id",
    "tier": "budget_id",
}
# LiteLLM's budget fields that only a budget (tier) can carry, not a single customer.
BUDGET_ONLY = ("soft_budget", "max_parallel_requests", "tpm_limit", "rpm_limit", "model_max_budget")


# --- errors ---------------------------------------------------------------------------------------


class LiteLLMError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param

    def response(self) -> Response:
        body = {
            "error": {
                "message": self.message,
                "type": TYPES.get(
                    self.status, "bad_request" if self.status < 500 else "internal_server_error"
                ),
                "param": self.param,
                "code": str(self.status),
            }
        }
        return Response(json.dumps(body), status=self.status, mimetype="application/json")


@bp.errorhandler(LiteLLMError)
def _litellm_error(err: LiteLLMError) -> Response:
    return err.response()


@bp.errorhandler(ApiError)
def _api_error(err: ApiError) -> Response:
    return LiteLLMError(err.status, err.message, err.param).response()


@bp.errorhandler(DomainError)
def _domain_error(err: DomainError) -> Response:
    status = 404 if isinstance(err, NotFound) else 400  # LiteLLM answers conflicts with 400
    return LiteLLMError(status, err.message, LITELLM_FIELDS.get(err.field or "", err.field)).response()


# Paths of this blueprint: an HTTP error raised before a view is chosen (405, say) reaches the app's
# handler, not the blueprint's; the app's handler can answer these paths with `http_error`.
PATH_PREFIXES = ("/customer/", "/end_user/", "/budget/")


@bp.errorhandler(HTTPException)
def http_error(err: HTTPException) -> Response:
    """werkzeug errors, and flask-smorest's validation errors (`data["messages"]`)."""
    status = err.code or 500
    data = getattr(err, "data", None) or {}
    if "messages" in data:
        message, param = _first_problem(data["messages"])
        return LiteLLMError(status, message, param).response()
    return LiteLLMError(status, data.get("message") or err.description or err.name).response()


@bp.errorhandler(Exception)
def _unexpected(err: Exception) -> Response:
    current_app.logger.exception("unhandled error on a LiteLLM route")
    return LiteLLMError(500, "Internal error.").response()


def _first_problem(messages: Any) -> tuple[str, str | None]:
    """webargs' {"json": {"max_budget": ["Not a valid number."]}} as one message naming the field."""
    for problems in messages.values() if isinstance(messages, dict) else ():
        if isinstance(problems, dict) and problems:
            field, text = next(iter(problems.items()))
            param = None if field == "_schema" else str(field)
            return (f"{field}: {_text(text)}" if param else _text(text)), param
        if problems:
            return _text(problems), None
    return "The request is not valid.", None


def _text(problems: Any) -> str:
    if isinstance(problems, list) and problems:
        return _text(problems[0])
    if isinstance(problems, dict) and problems:
        key, value = next(iter(problems.items()))
        return f"{key}: {_text(value)}"
    return str(problems)


# --- schemas --------------------------------------------------------------------------------------


class LiteLLMBody(Schema):
    class Meta:
        unknown = EXCLUDE  # LiteLLM clients send fields Tollgate has no use for


def _usd_field() -> fields.Float:
    # NaN and infinities are let through so the view refuses them with LiteLLM's 400 and message.
    return fields.Float(allow_none=True, allow_nan=True)


def _count_field() -> fields.Integer:
    return fields.Integer(allow_none=True, strict=True)


class LiteLLMBudgetIn(LiteLLMBody):
    """BudgetNewRequest."""

    budget_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=64))
    max_budget = _usd_field()
    soft_budget = _usd_field()
    max_parallel_requests = _count_field()
    tpm_limit = _count_field()
    rpm_limit = _count_field()
    budget_duration = fields.String(allow_none=True)
    model_max_budget = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), allow_none=True)
    budget_reset_at = fields.Raw(allow_none=True)  # accepted; Tollgate computes resets from the period


class LiteLLMCustomerFields(LiteLLMBudgetIn):
    user_id = fields.String(required=True, validate=validate.Length(min=1, max=256))
    alias = fields.String(allow_none=True, validate=validate.Length(max=256))
    blocked = fields.Boolean(allow_none=True)
    allowed_model_region = fields.String(allow_none=True, validate=validate.OneOf(REGIONS))
    default_model = fields.String(allow_none=True, validate=validate.Length(min=1, max=200))


class LiteLLMNewCustomerIn(LiteLLMCustomerFields):
    """NewCustomerRequest."""

    spend = fields.Float(allow_none=True)  # LiteLLM's initial spend: accepted, not used


class LiteLLMUpdateCustomerIn(LiteLLMCustomerFields):
    """UpdateCustomerRequest."""


class LiteLLMUserIdsIn(LiteLLMBody):
    """DeleteCustomerRequest and BlockUsers."""

    user_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=256)),
        required=True,
        validate=validate.Length(max=1000),
    )


class LiteLLMInfoArgs(LiteLLMBody):
    end_user_id = fields.String(required=True, validate=validate.Length(min=1, max=256))


class LiteLLMBudgetsIn(LiteLLMBody):
    """BudgetRequest."""

    budgets = fields.List(fields.String(), required=True, validate=validate.Length(max=1000))


class LiteLLMBudgetDeleteIn(LiteLLMBody):
    """BudgetDeleteRequest."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class LiteLLMTierRef(Schema):
    key = fields.String()
    version = fields.Integer()


class LiteLLMBudgetRow(Schema):
    """litellm_budget_table, plus the Tollgate tier version it shows."""

    budget_id = fields.String(allow_none=True)
    soft_budget = fields.Float(allow_none=True)
    max_budget = fields.Float(allow_none=True)
    max_parallel_requests = fields.Integer(allow_none=True)
    tpm_limit = fields.Integer(allow_none=True)
    rpm_limit = fields.Integer(allow_none=True)
    model_max_budget = fields.Dict(allow_none=True)
    budget_duration = fields.String(allow_none=True)
    budget_reset_at = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    usage_tier = fields.Nested(LiteLLMTierRef, allow_none=True)


class LiteLLMCustomer(Schema):
    """LiteLLM's customer (end user) fields, then Tollgate's own."""

    user_id = fields.String(required=True)
    blocked = fields.Boolean(required=True)
    alias = fields.String(allow_none=True)
    spend = fields.Float(required=True, metadata={"description": "USD: current period, else lifetime"})
    allowed_model_region = fields.String(allow_none=True)
    default_model = fields.String(allow_none=True)
    budget_id = fields.String(allow_none=True)
    litellm_budget_table = fields.Nested(LiteLLMBudgetRow, allow_none=True)
    name = fields.String(required=True)
    token_balance = fields.Integer(required=True)
    usage_tier = fields.Nested(LiteLLMTierRef, allow_none=True)
    max_budget_usd = fields.String(allow_none=True, metadata={"description": "the customer's own budget"})


class LiteLLMBlocked(Schema):
    blocked_users = fields.List(fields.Nested(LiteLLMCustomer), required=True)


class LiteLLMUnblocked(Schema):
    blocked_users = fields.List(fields.String(), required=True)


class LiteLLMDeleted(Schema):
    deleted_customers = fields.Integer(required=True)
    message = fields.String(required=True)


# --- money, periods and budgets -------------------------------------------------------------------


def _money(name: str, value: object) -> int | None:
    """A LiteLLM USD amount (a JSON number) as nano-USD; 400 with LiteLLM's message when invalid."""
    if value is None:
        return None
    try:
        return to_nusd(value)
    except MoneyError as exc:
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and (not math.isfinite(value) or value < 0)
        ):
            raise LiteLLMError(
                400, f"{name} must be a non-negative finite number. Received: {value}", name
            ) from exc
        raise LiteLLMError(400, f"{name}: {exc}", name) from exc


def _period(duration: str | None) -> str:
    """LiteLLM's budget_duration as a tier period; the forms (`30s`…`1mo`) are valid periods."""
    if duration is None:
        return periods.NONE
    try:
        return str(periods.parse(duration))
    except ValueError as exc:
        raise LiteLLMError(400, f"budget_duration: {exc}", "budget_duration") from exc


def _duration(period: str) -> str | None:
    return None if period == periods.NONE else period


def _usd(nusd: int | None) -> float | None:
    return None if nusd is None else float(to_usd(nusd))


def _model_budgets(raw: dict | None, period: str) -> dict[str, str]:
    """model_max_budget {model: {max_budget, budget_duration, tpm_limit, rpm_limit}} → {model: usd}.

    Tollgate's per-model budgets run on the budget's own period and have no per-model rate limits:
    a different budget_duration or a per-model tpm/rpm limit is refused rather than ignored.
    """
    out: dict[str, str] = {}
    for model, config in (raw or {}).items():
        where = f"model_max_budget.{model}"
        if isinstance(config, dict):
            amount = config.get("max_budget", config.get("budget_limit"))
            for limit in ("tpm_limit", "rpm_limit"):
                if config.get(limit) is not None:
                    raise LiteLLMError(
                        400,
                        f"{where}.{limit}: per-model rate limits are not supported; set tpm_limit and "
                        "rpm_limit on the budget itself",
                        "model_max_budget",
                    )
            duration = config.get("budget_duration")
            if duration is not None and _period(duration) != period:
                raise LiteLLMError(
                    400,
                    f"{where}.budget_duration: per-model budgets run on the budget's budget_duration "
                    f"({_duration(period) or 'none'}); {duration!r} differs",
                    "model_max_budget",
                )
        elif isinstance(config, int | float | str) and not isinstance(config, bool):
            amount = config
        else:
            raise LiteLLMError(400, f'{where}: expected {{"max_budget": <USD>}}', "model_max_budget")
        nusd = _money(f"{where}.max_budget", amount)
        if nusd is not None:
            out[model] = usd_str(nusd)
    return out


def _tier_changes(args: dict, current_period: str) -> dict[str, Any]:
    """The SPEC 4 tier fields that the LiteLLM budget fields present in `args` set."""
    spec: dict[str, Any] = {}
    if "budget_duration" in args:
        spec["period"] = _period(args["budget_duration"])
    for litellm_name, tier_name in (("max_budget", "max_budget_usd"), ("soft_budget", "soft_budget_usd")):
        if litellm_name in args:
            nusd = _money(litellm_name, args[litellm_name])
            spec[tier_name] = None if nusd is None else usd_str(nusd)
    for name in ("rpm_limit", "tpm_limit", "max_parallel_requests"):
        if name in args:
            spec[name] = args[name]
    if "model_max_budget" in args:
        spec["model_budgets_usd"] = _model_budgets(
            args["model_max_budget"], spec.get("period", current_period)
        )
    return spec


def budget_row(tier: UsageTier) -> dict[str, Any]:
    """A tier version as LiteLLM's litellm_budget_table row."""
    duration = _duration(tier.period)
    model_budgets = {
        model: {"max_budget": _usd(nusd), "budget_duration": duration, "tpm_limit": None, "rpm_limit": None}
        for model, nusd in (tier.model_budgets_nusd or {}).items()
    }
    return {
        "budget_id": tier.key,
        "soft_budget": _usd(tier.soft_budget_nusd),
        "max_budget": _usd(tier.max_budget_nusd),
        "max_parallel_requests": tier.max_parallel_requests,
        "tpm_limit": tier.tpm_limit,
        "rpm_limit": tier.rpm_limit,
        "model_max_budget": model_budgets or None,
        "budget_duration": duration,
        "budget_reset_at": None,
        "created_at": iso(tier.created_at),
        "usage_tier": {"key": tier.key, "version": tier.version},
    }


def _has_budget(tier: UsageTier) -> bool:
    """Whether the tier carries anything LiteLLM's budget table shows."""
    return any(
        value is not None
        for value in (
            tier.max_budget_nusd,
            tier.soft_budget_nusd,
            tier.rpm_limit,
            tier.tpm_limit,
            tier.max_parallel_requests,
        )
    ) or bool(tier.model_budgets_nusd)


def _find_budget(project: Project, budget_id: str) -> UsageTier:
    tier = latest_version(db.session, project, budget_id)
    if tier is None:
        raise LiteLLMError(404, f"Budget id={budget_id} does not exist in db", "budget_id")
    return tier


# --- customers ------------------------------------------------------------------------------------


def _find_customer(project: Project, user_id: str, param: str = "user_id") -> Customer:
    customer = db.session.scalar(
        select(Customer).where(Customer.project_id == project.id, Customer.external_id == user_id)
    )
    if customer is None:
        raise LiteLLMError(404, f"End User Id={user_id} does not exist in db", param)
    return customer


def _period_spends(project: Project, customers: list[Customer], now: datetime) -> dict[int, int]:
    """nano-USD spent in the current period by the customers whose tier has one."""
    periodic = [c for c in customers if c.period_end is not None and c.period_end > now]
    if not periodic:
        return {}
    stmt = (
        select(UsageRecord.customer_id, func.coalesce(func.sum(UsageRecord.cost_nusd), 0))
        .join(Customer, Customer.id == UsageRecord.customer_id)
        .where(
            Customer.project_id == project.id,
            Customer.period_end.is_not(None),
            UsageRecord.created_at >= Customer.period_start,
        )
        .group_by(UsageRecord.customer_id)
    )
    if len(periodic) <= 100:
        stmt = stmt.where(Customer.id.in_([c.id for c in periodic]))
    return {pk: int(total) for pk, total in db.session.execute(stmt) if pk is not None}


def customer_shapes(project: Project, customers: list[Customer]) -> list[dict[str, Any]]:
    """Customers in LiteLLM's end-user shape, then Tollgate's own fields."""
    tiers = {t.id: t for t in db.session.scalars(select(UsageTier).where(UsageTier.project_id == project.id))}
    default = tiers.get(project.default_tier_id) if project.default_tier_id is not None else None
    now = now_utc()
    spends = _period_spends(project, customers, now)
    out = []
    for customer in customers:
        tier = tiers.get(customer.tier_id) if customer.tier_id is not None else None
        # With a period, the current period's spend (0 once it ended, until it rolls over); else lifetime.
        spend = customer.spend_nusd if customer.period_end is None else spends.get(customer.id, 0)
        budget_id = tier.key if tier is not None and (default is None or tier.key != default.key) else None
        table = None
        if tier is not None and (budget_id is not None or _has_budget(tier)):
            table = budget_row(tier)
            table["budget_id"] = budget_id
            table["budget_reset_at"] = iso(customer.period_end)
            if customer.max_budget_nusd is not None:  # the customer's own budget applies on top
                own = customer.max_budget_nusd
                table["max_budget"] = _usd(
                    own if tier.max_budget_nusd is None else min(own, tier.max_budget_nusd)
                )
        elif customer.max_budget_nusd is not None:
            table = {
                "budget_id": None,
                "soft_budget": None,
                "max_budget": _usd(customer.max_budget_nusd),
                "max_parallel_requests": None,
                "tpm_limit": None,
                "rpm_limit": None,
                "model_max_budget": None,
                "budget_duration": _duration(tier.period) if tier is not None else None,
                "budget_reset_at": iso(customer.period_end),
                "created_at": iso(customer.created_at),
                "usage_tier": None,
            }
        regions = list(customer.allowed_regions or [])
        out.append(
            {
                "user_id": customer.external_id,
                "blocked": customer.blocked,
                "alias": customer.alias,
                "spend": _usd(spend),
                "allowed_model_region": regions[0] if len(regions) == 1 and regions[0] in REGIONS else None,
                "default_model": (customer.metadata_ or {}).get("default_model"),
                "budget_id": budget_id,
                "litellm_budget_table": table,
                "name": customer.name,
                "token_balance": customer.token_balance,
                "usage_tier": {"key": tier.key, "version": tier.version} if tier is not None else None,
                "max_budget_usd": None
                if customer.max_budget_nusd is None
                else usd_str(customer.max_budget_nusd),
            }
        )
    return out


def customer_shape(project: Project, customer: Customer) -> dict[str, Any]:
    return customer_shapes(project, [customer])[0]


def _check_default_model(project: Project, model: str | None) -> None:
    if model is None:
        return
    names = set(db.session.scalars(select(Model.name).where(Model.project_id == project.id)))
    if model not in names:
        listed = "{" + ", ".join(repr(n) for n in sorted(names)) + "}"
        raise LiteLLMError(
            422,
            "Default Model not on proxy. Configure it in the admin or the config file. "
            f"Default_model={model}, proxy_model_names={listed}",
            "default_model",
        )


def _check_either_or(args: dict) -> None:
    if args.get("max_budget") is not None and args.get("budget_id") is not None:
        raise LiteLLMError(400, "Set either 'max_budget' or 'budget_id', not both.", "max_budget")


def _check_customer_budget_fields(args: dict, period: str) -> None:
    """Customer bodies may carry LiteLLM budget fields; only max_budget belongs to a customer.

    The rest would need a budget of the customer's own: refused (never silently ignored), except a
    budget_duration that is the period the customer's budget already runs on.
    """
    _money("max_budget", args.get("max_budget"))
    for name in BUDGET_ONLY:
        if args.get(name) is not None:
            raise LiteLLMError(
                400,
                f"{name} cannot be set on a single customer: create a budget with /budget/new and pass "
                "its budget_id",
                name,
            )
    duration = args.get("budget_duration")
    if duration is not None and _period(duration) != period:
        raise LiteLLMError(
            400,
            f"budget_duration: this customer's budget runs on {_duration(period) or 'no period'}; to give "
            "customers another budget_duration create a budget with /budget/new and pass its budget_id",
            "budget_duration",
        )


def _tier_for(project: Project, budget_id: str | None, customer: Customer | None) -> UsageTier | None:
    """The tier a customer body points at: budget_id's latest version, else the current or default."""
    if budget_id is not None:
        return _find_budget(project, budget_id)
    if customer is not None and customer.tier_id is not None:
        return db.session.get(UsageTier, customer.tier_id)
    return db.session.get(UsageTier, project.default_tier_id) if project.default_tier_id else None


def _customer_changes(args: dict, customer: Customer | None) -> dict[str, Any]:
    """Tollgate customer fields from a LiteLLM customer body. null leaves a field as it is."""
    changes: dict[str, Any] = {}
    if args.get("alias") is not None:
        changes["alias"] = args["alias"]
    if args.get("blocked") is not None:
        changes["blocked"] = args["blocked"]  # false is honoured: it unblocks
    if args.get("allowed_model_region") is not None:
        changes["allowed_regions"] = [args["allowed_model_region"]]
    if args.get("default_model") is not None:
        metadata = dict(customer.metadata_ or {}) if customer is not None else {}
        changes["metadata"] = {**metadata, "default_model": args["default_model"]}
    return changes


def _customer_route(rule: str, **options):
    """A /customer/… route and its /end_user/… alias."""

    def decorator(func):
        bp.route(f"/customer{rule}", **options)(func)
        bp.route(f"/end_user{rule}", endpoint=f"end_user_{func.__name__}", **options)(func)
        return func

    return decorator


@_customer_route("/new", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMNewCustomerIn)
@bp.response(200, LiteLLMCustomer)
def new_customer(args):
    project: Project = g.project
    _check_either_or(args)
    tier = _tier_for(project, args.get("budget_id"), None)
    _check_customer_budget_fields(args, tier.period if tier is not None else periods.NONE)
    _check_default_model(project, args.get("default_model"))
    user_id = args["user_id"]
    duplicate = LiteLLMError(
        400, f"Customer already exists, passed user_id={user_id}. Please pass a new user_id.", "user_id"
    )
    with session_writes(db.session):
        if db.session.scalar(
            select(Customer.id).where(Customer.project_id == project.id, Customer.external_id == user_id)
        ):
            raise duplicate
        fields_in = {
            "customer_id": user_id,
            "blocked": bool(args.get("blocked")),
            **_customer_changes(args, None),
        }
        if args.get("budget_id") is not None:
            assert tier is not None
            fields_in["tier"] = {"key": tier.key, "version": tier.version}
        try:
            customer = ops.create_customer(db.session, project, fields_in, SOURCE, now_utc())
        except Conflict as exc:  # created concurrently
            raise duplicate from exc
        if args.get("max_budget") is not None:
            customer.max_budget_nusd = _money("max_budget", args["max_budget"])
            db.session.flush()
        body = customer_shape(project, customer)
    return body


@_customer_route("/info", methods=["GET"])
@bp.arguments(LiteLLMInfoArgs, location="query")
@bp.response(200, LiteLLMCustomer)
def customer_info(args):
    return customer_shape(g.project, _find_customer(g.project, args["end_user_id"], "end_user_id"))


@_customer_route("/update", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMUpdateCustomerIn)
@bp.response(200, LiteLLMCustomer)
def update_customer(args):
    """Every field given (false and 0 included) takes effect; null leaves a field as it is.

    `max_budget` is the customer's own budget; `budget_id` moves the customer to that budget, which
    then is its budget (LiteLLM's either-or): the customer's own max_budget is cleared.
    """
    project: Project = g.project
    _check_either_or(args)
    customer = _find_customer(project, args["user_id"])
    tier = _tier_for(project, args.get("budget_id"), customer)
    _check_customer_budget_fields(args, tier.period if tier is not None else periods.NONE)
    _check_default_model(project, args.get("default_model"))
    with session_writes(db.session):
        customer = _find_customer(project, args["user_id"])
        changes = _customer_changes(args, customer)
        current = db.session.get(UsageTier, customer.tier_id) if customer.tier_id is not None else None
        if args.get("budget_id") is not None:
            assert tier is not None
            if current is None or current.key != tier.key:
                changes["tier"] = {"key": tier.key, "version": tier.version}
            customer.max_budget_nusd = None
        if args.get("max_budget") is not None:
            customer.max_budget_nusd = _money("max_budget", args["max_budget"])
        ops.update_customer(db.session, customer, changes, SOURCE, now_utc())
        body = customer_shape(project, customer)
    return body


@_customer_route("/delete", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMUserIdsIn)
@bp.response(200, LiteLLMDeleted)
def delete_customers(args):
    """All or nothing: any unknown id is a 404 and nothing is deleted."""
    project: Project = g.project
    wanted = list(dict.fromkeys(args["user_ids"]))
    if not wanted:
        raise LiteLLMError(400, f"user_id is required, passed user_id = {args['user_ids']}", "user_ids")
    with session_writes(db.session):
        found = list(
            db.session.scalars(
                select(Customer).where(Customer.project_id == project.id, Customer.external_id.in_(wanted))
            )
        )
        missing = [user_id for user_id in wanted if user_id not in {c.external_id for c in found}]
        if missing:
            raise LiteLLMError(404, f"End User Id(s)={', '.join(missing)} do not exist in db", "user_ids")
        for customer in found:
            ops.delete_customer(db.session, customer)
    return {
        "deleted_customers": len(found),
        "message": "Successfully deleted customers with ids: " + str(args["user_ids"]),
    }


@_customer_route("/block", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMUserIdsIn)
@bp.response(200, LiteLLMBlocked)
def block_customers(args):
    """Block these customers; unknown ids are created, blocked (as LiteLLM's upsert)."""
    project: Project = g.project
    with session_writes(db.session):
        blocked = []
        for user_id in dict.fromkeys(args["user_ids"]):
            customer = db.session.scalar(
                select(Customer).where(Customer.project_id == project.id, Customer.external_id == user_id)
            )
            if customer is None:
                try:
                    customer = ops.create_customer(
                        db.session, project, {"customer_id": user_id, "blocked": True}, SOURCE, now_utc()
                    )
                except Conflict:  # its first proxy call created it meanwhile: block that one
                    customer = _find_customer(project, user_id, "user_ids")
            if not customer.blocked:
                ops.update_customer(db.session, customer, {"blocked": True}, SOURCE, now_utc())
            blocked.append(customer)
        body = {"blocked_users": customer_shapes(project, blocked)}
    return body


@_customer_route("/unblock", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMUserIdsIn)
@bp.response(200, LiteLLMUnblocked)
def unblock_customers(args):
    """Unblock these customers (the stored flag, unlike LiteLLM); answers those still blocked: none."""
    project: Project = g.project
    wanted = list(dict.fromkeys(args["user_ids"]))
    with session_writes(db.session):
        found = list(
            db.session.scalars(
                select(Customer).where(Customer.project_id == project.id, Customer.external_id.in_(wanted))
            )
        )
        for customer in found:
            if customer.blocked:
                ops.update_customer(db.session, customer, {"blocked": False}, SOURCE, now_utc())
        still = [c.external_id for c in found if c.blocked]
    return {"blocked_users": still}


@_customer_route("/list", methods=["GET"])
@bp.response(200, LiteLLMCustomer(many=True))
def list_customers():
    project: Project = g.project
    customers = list(
        db.session.scalars(select(Customer).where(Customer.project_id == project.id).order_by(Customer.id))
    )
    return customer_shapes(project, customers)


# --- budgets --------------------------------------------------------------------------------------


def _checked_budget_id(budget_id: str) -> str:
    if not KEY.match(budget_id):
        raise LiteLLMError(
            400,
            f"budget_id {budget_id!r} is not valid here: a budget id is a Tollgate tier key (lower-case "
            "letters, digits, '-' and '_', up to 64 characters)",
            "budget_id",
        )
    return budget_id


@bp.route("/budget/new", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMBudgetIn)
@bp.response(200, LiteLLMBudgetRow)
def new_budget(args):
    """A new usage tier, not prepaid, from LiteLLM's budget fields."""
    project: Project = g.project
    budget_id = _checked_budget_id(args.get("budget_id") or str(uuid.uuid4()))
    spec = {"key": budget_id, "name": budget_id, "prepaid": False, **_tier_changes(args, periods.NONE)}
    with session_writes(db.session):
        if latest_version(db.session, project, budget_id) is not None:
            raise LiteLLMError(400, f"Budget with id '{budget_id}' already exists.", "budget_id")
        try:
            tier = create_tier(db.session, project, spec)
        except Conflict as exc:  # created concurrently
            raise LiteLLMError(400, f"Budget with id '{budget_id}' already exists.", "budget_id") from exc
        body = budget_row(tier)
    return body


@bp.route("/budget/update", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMBudgetIn)
@bp.response(200, LiteLLMBudgetRow)
def update_budget(args):
    """Change a budget: fields given (null clears one) apply to the key's latest version.

    A version customers have used is locked (SPEC 4): it is cloned, the change made to the clone,
    and its customers (and the project default, if it was that version) moved to the clone.
    """
    project: Project = g.project
    if args.get("budget_id") is None:
        raise LiteLLMError(400, "budget_id is required", "budget_id")
    with session_writes(db.session):
        tier = _find_budget(project, args["budget_id"])
        changes = _tier_changes(args, tier.period)
        current = {k: v for k, v in tier_spec(tier).items() if k not in ("version", "locked")}
        if "period" in changes:
            del current["anchor"]  # a new period takes its own default anchor, as edit_tier does
        if not changes or tier_values({**current, **changes}) == tier_values(current):
            body = budget_row(tier)  # nothing changes: no new version
        elif not tier.locked:
            body = budget_row(edit_tier(db.session, tier, changes))
        else:
            clone = edit_tier(db.session, clone_tier(db.session, tier), changes)
            ops.migrate_customers(
                db.session, project, tier.key, tier.version, clone.version, None, SOURCE, now_utc()
            )
            if project.default_tier_id == tier.id:
                project.default_tier_id = clone.id
                stamp.bump(db.session)
            db.session.flush()
            body = budget_row(clone)
    return body


@bp.route("/budget/info", methods=["POST"])
@bp.arguments(LiteLLMBudgetsIn)
@bp.response(200, LiteLLMBudgetRow(many=True))
def budget_info(args):
    if not args["budgets"]:
        raise LiteLLMError(
            400, f"Specify list of budget id's to query. Passed in={args['budgets']}", "budgets"
        )
    rows = []
    for budget_id in dict.fromkeys(args["budgets"]):
        tier = latest_version(db.session, g.project, budget_id)
        if tier is not None:  # as LiteLLM: the budgets that exist
            rows.append(budget_row(tier))
    return rows


@bp.route("/budget/list", methods=["GET"])
@bp.response(200, LiteLLMBudgetRow(many=True))
def list_budgets():
    """Every tier key of the project, at its latest version, in order of creation."""
    latest: dict[str, UsageTier] = {}
    for tier in db.session.scalars(
        select(UsageTier).where(UsageTier.project_id == g.project.id).order_by(UsageTier.id)
    ):
        if tier.key not in latest or tier.version > latest[tier.key].version:
            latest[tier.key] = tier
    return [budget_row(tier) for tier in latest.values()]


@bp.route("/budget/delete", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMBudgetDeleteIn)
@bp.response(200, LiteLLMBudgetRow)
def delete_budget(args):
    """Delete every version of a budget nothing refers to; answers the deleted row.

    Refused while customers are on it, while it is the project's default, or once it has usage
    history (period counters): Tollgate keeps those versions so the history stays whole.
    """
    project: Project = g.project
    budget_id = args["id"]
    with session_writes(db.session):
        tier = _find_budget(project, budget_id)
        versions = list(
            db.session.scalars(
                select(UsageTier).where(UsageTier.project_id == project.id, UsageTier.key == budget_id)
            )
        )
        ids = [v.id for v in versions]
        on_it = db.session.scalar(select(func.count()).select_from(Customer).where(Customer.tier_id.in_(ids)))
        if on_it:
            raise LiteLLMError(
                400,
                f"Budget id={budget_id} is used by {on_it} customer(s): move them to another budget first",
                "id",
            )
        if project.default_tier_id in ids:
            raise LiteLLMError(400, f"Budget id={budget_id} is the project's default tier", "id")
        if db.session.scalar(
            select(func.count()).select_from(PeriodCounter).where(PeriodCounter.tier_id.in_(ids))
        ):
            raise LiteLLMError(
                400,
                f"Budget id={budget_id} has usage history, which Tollgate keeps; it cannot be deleted",
                "id",
            )
        body = budget_row(tier)
        for version in versions:
            db.session.delete(version)
        stamp.bump(db.session)
        db.session.flush()
    return body
