"""The /budget/… routes: LiteLLM's budgets as Tollgate usage tiers, not prepaid."""

from __future__ import annotations

import uuid

from flask import g
from sqlalchemy import func, select

from app import stamp
from app.api.idempotency import idempotent
from app.api.litellm.blueprint import SOURCE, LiteLLMError, bp
from app.api.litellm.mapping import find_budget, tier_changes
from app.api.litellm.schemas import LiteLLMBudgetDeleteIn, LiteLLMBudgetIn, LiteLLMBudgetRow, LiteLLMBudgetsIn
from app.api.litellm.shapes import budget_row
from app.customers import operations as ops
from app.db import now_utc, session_writes
from app.errors import Conflict
from app.extensions import db
from app.metering import periods
from app.models.customer import Customer
from app.models.project import Project
from app.models.tier import UsageTier
from app.models.usage import PeriodCounter
from app.tiers.operations import clone_tier, create_tier, edit_tier, latest_version
from app.tiers.spec import KEY, tier_spec, tier_values


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
    spec = {"key": budget_id, "name": budget_id, "prepaid": False, **tier_changes(args, periods.NONE)}
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
        tier = find_budget(project, args["budget_id"])
        changes = tier_changes(args, tier.period)
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
        tier = find_budget(project, budget_id)
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
