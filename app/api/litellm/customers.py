"""The /customer/… routes and their /end_user/… aliases: LiteLLM's customers (end users) as Tollgate
customers."""

from __future__ import annotations

from typing import Any

from flask import g
from sqlalchemy import select

from app.api.idempotency import idempotent
from app.api.litellm.blueprint import SOURCE, LiteLLMError, bp
from app.api.litellm.mapping import find_budget, parse_duration, parse_usd
from app.api.litellm.schemas import (
    LiteLLMBlocked,
    LiteLLMCustomer,
    LiteLLMDeleted,
    LiteLLMInfoArgs,
    LiteLLMNewCustomerIn,
    LiteLLMUnblocked,
    LiteLLMUpdateCustomerIn,
    LiteLLMUserIdsIn,
)
from app.api.litellm.shapes import customer_shape, customer_shapes
from app.customers import operations as ops
from app.db import now_utc, session_writes
from app.errors import Conflict
from app.extensions import db
from app.metering import periods
from app.models.catalog import Model
from app.models.customer import Customer
from app.models.project import Project
from app.models.tier import UsageTier

# LiteLLM's budget fields that only a budget (tier) can carry, not a single customer.
BUDGET_ONLY = ("soft_budget", "max_parallel_requests", "tpm_limit", "rpm_limit", "model_max_budget")


def _find_customer(project: Project, user_id: str, param: str = "user_id") -> Customer:
    customer = db.session.scalar(
        select(Customer).where(Customer.project_id == project.id, Customer.external_id == user_id)
    )
    if customer is None:
        raise LiteLLMError(404, f"End User Id={user_id} does not exist in db", param)
    return customer


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


def _check_customer_budget_fields(args: dict, period: str, has_own_budget: bool) -> None:
    """Customer bodies may carry LiteLLM budget fields; max_budget and budget_duration make the
    customer's own budget (SPEC 4). The rest would need a budget of the customer's own: refused
    (never silently ignored). A budget_duration with no own budget to apply to is refused too,
    unless it is the period the customer's tier already runs on."""
    parse_usd("max_budget", args.get("max_budget"))
    for name in BUDGET_ONLY:
        if args.get(name) is not None:
            raise LiteLLMError(
                400,
                f"{name} cannot be set on a single customer: create a budget with /budget/new and pass "
                "its budget_id",
                name,
            )
    duration = args.get("budget_duration")
    if duration is None:
        return
    own = parse_duration(duration)
    if args.get("max_budget") is None and not has_own_budget and own != period:
        raise LiteLLMError(
            400,
            "budget_duration: it sets the period of the customer's own max_budget; pass max_budget with "
            "it, or create a budget with /budget/new and pass its budget_id",
            "budget_duration",
        )


def _tier_for(project: Project, budget_id: str | None, customer: Customer | None) -> UsageTier | None:
    """The tier a customer body points at: budget_id's latest version, else the current or default."""
    if budget_id is not None:
        return find_budget(project, budget_id)
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
    _check_customer_budget_fields(args, tier.period if tier is not None else periods.NONE, False)
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
            ops.set_own_budget(
                db.session,
                customer,
                parse_usd("max_budget", args["max_budget"]),
                args.get("budget_duration"),
                now_utc(),
            )
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
    period = tier.period if tier is not None else periods.NONE
    _check_customer_budget_fields(args, period, customer.max_budget_nusd is not None)
    _check_default_model(project, args.get("default_model"))
    with session_writes(db.session):
        customer = _find_customer(project, args["user_id"])
        changes = _customer_changes(args, customer)
        current = db.session.get(UsageTier, customer.tier_id) if customer.tier_id is not None else None
        if args.get("budget_id") is not None:
            assert tier is not None
            if current is None or current.key != tier.key:
                changes["tier"] = {"key": tier.key, "version": tier.version}
            ops.set_own_budget(db.session, customer, None, None, now_utc())
        _update_own_budget(customer, args)
        ops.update_customer(db.session, customer, changes, SOURCE, now_utc())
        body = customer_shape(project, customer)
    return body


def _update_own_budget(customer: Customer, args: dict) -> None:
    """max_budget sets the own budget (its duration kept unless given); a budget_duration alone
    changes the period of an own budget the customer has."""
    duration = args.get("budget_duration", ops.KEEP)
    duration = ops.KEEP if duration is None else duration
    if args.get("max_budget") is not None:
        ops.set_own_budget(
            db.session, customer, parse_usd("max_budget", args["max_budget"]), duration, now_utc()
        )
    elif duration is not ops.KEEP and customer.max_budget_nusd is not None:
        ops.set_own_budget(db.session, customer, customer.max_budget_nusd, duration, now_utc())


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
        found = ops.find_customers(db.session, project, wanted)
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
        found = ops.find_customers(db.session, project, wanted)
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
