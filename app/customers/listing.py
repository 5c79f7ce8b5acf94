"""The customers list of the admin: grouped by usage tier, searched, filtered, paged by keyset.

Three statements whatever the number of customers: the tiers, the counts per tier (for the group
headers), and one page of rows, which also says of each row whether it awaits approval and how
many of its calls were refused in the last 24 h.

The "Awaiting approval" filter is the approval queue: one flat list, oldest first (SPEC 6), for
approving customers in bulk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flask import session as cookie
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from app.customers.operations import awaiting_approval
from app.customers.refusals import refusals_lately, refused_lately
from app.db import row_id
from app.models.customer import Customer
from app.models.project import Project
from app.models.tier import UsageTier
from app.projects.current import FIELD

PAGE = 50


def current_project(session: Session) -> Project:
    """The project the admin is looking at: the one chosen last, else `default`, else the first."""
    chosen = cookie.get(FIELD)
    project = session.scalar(select(Project).where(Project.slug == chosen)) if chosen else None
    project = project or session.scalar(select(Project).where(Project.slug == "default"))
    project = project or session.scalar(select(Project).order_by(Project.id).limit(1))
    if project is None:
        raise LookupError("no project: run `flask --app wsgi setup`")
    return project


@dataclass(frozen=True)
class Query:
    search: str = ""
    tier_id: int | None = None
    blocked: bool = False
    low_balance: bool = False
    awaiting: bool = False
    refused: bool = False
    after: tuple[int, int] | None = None  # (tier id, customer id) of the last row shown; flat: (0, id)

    @classmethod
    def from_args(cls, args) -> Query:
        after = None
        raw = args.get("after", "")
        parts = raw.split(".")
        if len(parts) == 2 and all(row_id(p) is not None for p in parts):
            after = (int(parts[0]), int(parts[1]))
        tier = args.get("tier", "")
        return cls(
            search=args.get("q", "").strip()[:320],
            tier_id=row_id(tier),
            blocked=args.get("blocked") == "1",
            low_balance=args.get("low") == "1",
            awaiting=args.get("awaiting") == "1",
            refused=args.get("refused") == "1",
            after=after,
        )

    @property
    def flat(self) -> bool:
        """The approval queue is one list, oldest first, rather than groups by tier."""
        return self.awaiting

    def params(self, **changes) -> dict:
        """Query-string values for a link that keeps the filters."""
        out = {
            "q": self.search or None,
            "tier": self.tier_id,
            "blocked": "1" if self.blocked else None,
            "low": "1" if self.low_balance else None,
            "awaiting": "1" if self.awaiting else None,
            "refused": "1" if self.refused else None,
        }
        out.update(changes)
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class Group:
    tier: UsageTier | None
    total: int
    customers: list[Customer] = field(default_factory=list)


@dataclass
class Page:
    project: Project
    tiers: list[UsageTier]
    groups: list[Group]
    next_after: str | None
    awaiting: set[int] = field(default_factory=set)  # ids of the rows awaiting approval
    refused: dict[int, int] = field(default_factory=dict)  # id → refusals in the last 24 h, when any


def _filtered(project: Project, query: Query, low_threshold: int | None, now: datetime) -> Select:
    stmt = select(Customer).where(Customer.project_id == project.id)
    if query.search:
        # The search is text, not a pattern: % and _ match themselves.
        escaped = query.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        stmt = stmt.where(
            or_(
                Customer.external_id == query.search,
                Customer.name.ilike(like, escape="\\"),
                Customer.email.ilike(like, escape="\\"),
            )
        )
    if query.tier_id is not None:
        stmt = stmt.where(Customer.tier_id == query.tier_id)
    if query.blocked:
        stmt = stmt.where(Customer.blocked.is_(True))
    if query.low_balance and low_threshold is not None:
        stmt = stmt.where(Customer.token_balance < low_threshold)
    if query.awaiting:
        stmt = stmt.where(awaiting_approval())
    if query.refused:
        stmt = stmt.where(refused_lately(now))
    return stmt


def find(session: Session, project: Project, query: Query, now: datetime) -> Page:
    tiers = list(
        session.scalars(
            select(UsageTier)
            .where(UsageTier.project_id == project.id)
            .order_by(UsageTier.key, UsageTier.version)
        )
    )
    base = _filtered(project, query, project.low_balance_tokens, now)
    filtered = base.subquery()
    counts = {
        tier_id: total
        for tier_id, total in session.execute(
            select(filtered.c.tier_id, func.count()).group_by(filtered.c.tier_id)
        )
    }
    stmt = base.add_columns(awaiting_approval().label("awaiting"), refusals_lately(now).label("refused"))
    rows = session.execute(_keyset(stmt, query).limit(PAGE + 1)).all()
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    page = Page(project, tiers, _grouped(rows, tiers, counts, query.flat), None)
    page.awaiting = {row.Customer.id for row in rows if row.awaiting}
    page.refused = {row.Customer.id: int(row.refused) for row in rows if row.refused}
    if more and rows:
        last = rows[-1].Customer
        page.next_after = f"{0 if query.flat else last.tier_id or 0}.{last.id}"
    return page


def _keyset(stmt: Select, query: Query) -> Select:
    """The page after `query.after`, in the list's order: by tier, or (the approval queue) in order
    of arrival, ids growing with creation."""
    if query.flat:
        after = query.after[1] if query.after else 0
        return stmt.where(Customer.id > after).order_by(Customer.id)
    order_tier = func.coalesce(Customer.tier_id, 0)
    if query.after is not None:
        tier_after, id_after = query.after
        stmt = stmt.where(or_(order_tier > tier_after, (order_tier == tier_after) & (Customer.id > id_after)))
    return stmt.order_by(order_tier, Customer.id)


def _grouped(rows, tiers: list[UsageTier], counts: dict, flat: bool) -> list[Group]:
    """The page's rows under their tier's header; flat: under one header (tier None) for all."""
    if flat:
        return [Group(None, sum(counts.values()), [row.Customer for row in rows])] if rows else []
    by_id = {t.id: t for t in tiers}
    groups: list[Group] = []
    for row in rows:
        customer = row.Customer
        if not groups or (groups[-1].tier.id if groups[-1].tier else None) != customer.tier_id:
            groups.append(Group(by_id.get(customer.tier_id), counts.get(customer.tier_id, 0)))
        groups[-1].customers.append(customer)
    return groups
