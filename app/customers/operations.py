"""Customer operations shared by the admin, the API and integrations. They flush; the caller commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from app.errors import Conflict, Invalid, NotFound
from app.events import recorder
from app.metering import periods
from app.metering.accounts import Defaults, open_account
from app.metering.allowance import rules_of
from app.metering.credits import Entry, add_or_set
from app.models.customer import Customer
from app.models.ledger import LedgerEntry
from app.models.project import Project
from app.models.tier import UsageTier
from app.tiers.operations import find_version, latest_version


def assign_tier(session: Session, customer: Customer, tier: UsageTier, source: str, now: datetime) -> bool:
    """Put the customer on this tier version. False if already there.

    Its period restarts by the tier's rules, except when it moves to another version of the same
    tier with the same period and anchor: then its billing cycle (and this period's use) goes on.

    The version is locked from now on (SPEC 4). Nothing is credited: replenishment happens when a
    period ends, and purchases credit tokens themselves.
    """
    if tier.project_id != customer.project_id:
        raise Invalid("that tier belongs to another project", "tier")
    if customer.tier_id == tier.id:
        return False
    previous = session.get(UsageTier, customer.tier_id) if customer.tier_id is not None else None
    customer.tier_id = tier.id
    if not _same_cycle(previous, tier):
        start, end = periods.window(periods.parse(tier.period), tier.anchor, now, now)
        customer.tier_assigned_at, customer.period_start, customer.period_end = now, start, end
    tier.locked = True
    session.flush()
    recorder.record(
        session.connection(),
        project_id=customer.project_id,
        type="customer.tier_changed",
        now=now,
        customer_pk=customer.id,
        customer_external_id=customer.external_id,
        data={
            "customer_id": customer.external_id,
            "from": {"key": previous.key, "version": previous.version} if previous else None,
            "to": {"key": tier.key, "version": tier.version},
            "source": source,
        },
    )
    return True


def _same_cycle(previous: UsageTier | None, tier: UsageTier) -> bool:
    """A new version of the same plan with the same period rules keeps the customer's billing cycle.

    Not with period `none`: its limits count for as long as the customer is on one version (SPEC 4).
    """
    return (
        previous is not None
        and tier.period != "none"
        and previous.key == tier.key
        and (previous.period, previous.anchor) == (tier.period, tier.anchor)
    )


def migrate_customers(
    session: Session,
    project: Project,
    key: str,
    from_version: int,
    to_version: int,
    customer_ids: Sequence[str] | None,
    source: str,
    now: datetime,
) -> int:
    """Move customers on `key` v`from_version` to v`to_version`: the chosen ones, or all. Returns how many."""
    target, moving = _migration(session, project, key, from_version, to_version, customer_ids)
    return sum(
        assign_tier(session, customer, target, source, now)
        for customer in list(session.scalars(moving.order_by(Customer.id)))
    )


@dataclass(frozen=True)
class MigrationPreview:
    total: int
    first: list[Customer]  # the first `shown` of them, in the order they would move
    awaiting: frozenset[int] = frozenset()  # the ids (Customer.id) among `first` awaiting approval
    awaiting_total: int = 0  # how many of all `total` await approval


def preview_migration(
    session: Session,
    project: Project,
    key: str,
    from_version: int,
    to_version: int,
    customer_ids: Sequence[str] | None,
    shown: int = 100,
) -> MigrationPreview:
    """Who `migrate_customers` with these arguments would move, refused as it would be; nothing changes."""
    _, moving = _migration(session, project, key, from_version, to_version, customer_ids)
    total, awaiting_total = session.execute(
        moving.with_only_columns(func.count(), func.count(case((awaiting_approval(), 1))))
    ).one()
    rows = session.execute(moving.add_columns(awaiting_approval()).order_by(Customer.id).limit(shown)).all()
    awaiting = frozenset(customer.id for customer, waiting in rows if waiting)
    return MigrationPreview(total, [customer for customer, _ in rows], awaiting, awaiting_total)


def _migration(
    session: Session,
    project: Project,
    key: str,
    from_version: int,
    to_version: int,
    customer_ids: Sequence[str] | None,
) -> tuple[UsageTier, Select[tuple[Customer]]]:
    """The target version and the statement selecting who moves; every chosen id must be on the source."""
    if from_version == to_version:
        raise Invalid("from_version and to_version are the same", "to_version")
    source_tier = _version_of(session, project, key, from_version, "from_version")
    target = _version_of(session, project, key, to_version, "to_version")
    stmt = select(Customer).where(Customer.project_id == project.id, Customer.tier_id == source_tier.id)
    if customer_ids is not None:
        wanted = set(customer_ids)
        stmt = stmt.where(Customer.external_id.in_(wanted))
        missing = wanted - set(session.scalars(stmt.with_only_columns(Customer.external_id)))
        if missing:
            raise NotFound(f"not on {key} v{from_version}: {', '.join(sorted(missing))}", "customer_ids")
    return target, stmt


def _version_of(session: Session, project: Project, key: str, version: int, field: str) -> UsageTier:
    """The version, or NotFound naming the field that asked for it (the form shows it there)."""
    try:
        return find_version(session, project, key, version)
    except NotFound as missing:
        raise NotFound(missing.message, field) from missing


def find_customer(session: Session, project: Project, customer_id: str) -> Customer:
    customer = session.scalar(
        select(Customer).where(Customer.project_id == project.id, Customer.external_id == customer_id)
    )
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}", "customer_id")
    return customer


def find_customer_and_approval(session: Session, project: Project, customer_id: str) -> tuple[Customer, bool]:
    """The customer and whether it awaits approval, in one statement (its admin page shows both)."""
    row = session.execute(
        select(Customer, awaiting_approval()).where(
            Customer.project_id == project.id, Customer.external_id == customer_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no customer {customer_id!r}", "customer_id")
    return row[0], bool(row[1])


def find_customers(session: Session, project: Project, customer_ids: Sequence[str]) -> list[Customer]:
    """The project's customers among these ids (unknown ids are simply absent)."""
    return list(
        session.scalars(
            select(Customer).where(
                Customer.project_id == project.id, Customer.external_id.in_(set(customer_ids))
            )
        )
    )


def resolve_tier(session: Session, project: Project, ref: str | dict | None) -> UsageTier | None:
    """A tier reference: a key (its latest version) or {"key", "version"}."""
    if ref is None:
        return None
    if isinstance(ref, str):
        tier = latest_version(session, project, ref)
        if tier is None:
            raise NotFound(f"no tier {ref!r}", "tier")
        return tier
    return find_version(session, project, ref["key"], ref["version"])


def create_customer(session: Session, project: Project, fields: dict, source: str, now: datetime) -> Customer:
    """A customer made on purpose (API, admin): the project's defaults, then the given fields.

    The initial balance (given, else the project's initial tokens) is its `initial_grant`.
    """
    tier = resolve_tier(session, project, fields.get("tier"))
    tokens = fields.get("token_balance", project.new_customer_initial_tokens or 0)
    defaults = Defaults(
        project.id,
        tokens,
        project.default_tier_id,
        project.default_shedding_tier,
        tuple(project.default_allowed_regions or ()),
        rules_of(session.get(UsageTier, project.default_tier_id)) if project.default_tier_id else None,
    )
    pk = open_account(session.connection(), defaults, fields["customer_id"], fields.get("name"), now, source)
    if pk is None:
        raise Conflict(f"customer {fields['customer_id']!r} already exists", "customer_id")
    customer = session.get(Customer, pk)
    assert customer is not None
    update_customer(
        session,
        customer,
        {k: v for k, v in fields.items() if k not in ("customer_id", "token_balance", "tier")},
        source,
        now,
        quiet=True,
    )
    if tier is not None:
        assign_tier(session, customer, tier, source, now)
    return customer


EDITABLE = ("name", "alias", "email", "shedding_tier", "allowed_regions", "blocked", "metadata")


def update_customer(
    session: Session, customer: Customer, changes: dict, source: str, now: datetime, quiet: bool = False
) -> Customer:
    """Change details; blocking and unblocking are events of their own."""
    unknown = set(changes) - set(EDITABLE) - {"tier"}
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}", sorted(unknown)[0])
    was_blocked = customer.blocked
    changed = []
    for name in EDITABLE:
        attribute = "metadata_" if name == "metadata" else name
        if name in changes and getattr(customer, attribute) != changes[name]:
            setattr(customer, attribute, changes[name])
            changed.append(name)
    if "tier" in changes:
        tier = resolve_tier(session, _project_of(session, customer), changes["tier"])
        if tier is not None and assign_tier(session, customer, tier, source, now):
            changed.append("tier")
    session.flush()
    if quiet or not changed:  # customer.updated lists only what changed (SPEC 7.1); nothing: no event
        return customer
    kind = "customer.updated"
    if customer.blocked != was_blocked:
        kind = "customer.blocked" if customer.blocked else "customer.unblocked"
    recorder.record(
        session.connection(),
        project_id=customer.project_id,
        type=kind,
        now=now,
        customer_pk=customer.id,
        customer_external_id=customer.external_id,
        data={"customer_id": customer.external_id, "changed": sorted(changed), "source": source},
    )
    return customer


def awaiting_approval():
    """Customers that have never had a token credited past a 0 initial grant (SPEC 6): the
    llmasaservice "no access until approved" queue. Derived from the ledger, never stored."""
    credited = select(LedgerEntry.id).where(LedgerEntry.customer_id == Customer.id, LedgerEntry.amount > 0)
    return ~credited.exists()


def approve(
    session: Session, project: Project, customer: Customer, tokens: int | None, source: str, now: datetime
) -> Entry:
    """Credit an awaiting customer (`adjustment`, reason "approved"), event `customer.approved`."""
    tokens = tokens if tokens is not None else project.approval_tokens
    if tokens is None:
        raise Invalid("tokens: give an amount (the project has no approval_tokens setting)", "tokens")
    if tokens < 1:
        raise Invalid("tokens must be at least 1", "tokens")
    # The row lock makes check and credit one step: two approvals at once credit once.
    session.execute(select(Customer.id).where(Customer.id == customer.id).with_for_update())
    waiting = session.scalar(select(Customer.id).where(Customer.id == customer.id, awaiting_approval()))
    if waiting is None:
        raise Conflict(f"customer {customer.external_id!r} is not awaiting approval", "customer_id")
    entry = add_or_set(
        session.connection(), customer.id, "add", tokens, source=source, reason="approved", now=now
    )
    recorder.record(
        session.connection(),
        project_id=project.id,
        type="customer.approved",
        now=now,
        customer_pk=customer.id,
        customer_external_id=customer.external_id,
        data={"customer_id": customer.external_id, "tokens": tokens, "token_balance": entry.balance_after},
    )
    session.expire(customer)
    return entry


def is_awaiting(session: Session, customer: Customer) -> bool:
    """Whether the customer is in the approval queue (see awaiting_approval)."""
    found = session.scalar(select(Customer.id).where(Customer.id == customer.id, awaiting_approval()))
    return found is not None


@dataclass
class Approvals:
    approved: list[Customer] = field(default_factory=list)
    not_awaiting: list[Customer] = field(default_factory=list)  # credited since the list was shown


def approve_many(
    session: Session,
    project: Project,
    chosen: Sequence[Customer],
    tokens: int | None,
    source: str,
    now: datetime,
) -> Approvals:
    """Approve each chosen customer with `approve`, in the caller's transaction. One that no longer
    awaits approval (approved or credited since the list was shown) is reported, and the others
    are approved all the same: `approve` refuses it before writing anything."""
    done = Approvals()
    for customer in sorted(chosen, key=lambda c: c.id):  # one lock order: two bulk approvals never deadlock
        try:
            approve(session, project, customer, tokens, source, now)
        except Conflict:
            done.not_awaiting.append(customer)
        else:
            done.approved.append(customer)
    return done


KEEP = object()  # set_own_budget: leave the duration as it is


def set_own_budget(
    session: Session, customer: Customer, max_budget_nusd: int | None, duration: object, now: datetime
) -> None:
    """The customer's own $ budget, on top of its tier's (SPEC 4). Its period runs from when it was
    set: a new budget, or a new duration, starts a fresh window; a new amount alone keeps the
    window and what it has spent. None removes the budget (and its duration)."""
    if max_budget_nusd is None:
        customer.max_budget_nusd = customer.budget_duration = customer.budget_set_at = None
        session.flush()
        return
    if max_budget_nusd < 0:
        raise Invalid("max_budget must not be negative", "max_budget")
    if duration is KEEP:
        duration = customer.budget_duration
    try:
        duration = periods.duration(None if duration is None else str(duration))
    except ValueError as exc:
        raise Invalid(f"budget_duration: {exc}", "budget_duration") from exc
    if (
        customer.max_budget_nusd is None
        or duration != customer.budget_duration
        or customer.budget_set_at is None
    ):
        customer.budget_set_at = now
    customer.max_budget_nusd, customer.budget_duration = max_budget_nusd, duration
    session.flush()


def delete_customer(session: Session, customer: Customer) -> None:
    """Remove the customer with its ledger, counters and usage records (the database cascades)."""
    session.delete(customer)
    session.flush()


def _project_of(session: Session, customer: Customer) -> Project:
    project = session.get(Project, customer.project_id)
    assert project is not None
    return project
