"""The customers list of the admin: grouped by usage tier, searched, filtered, paged by keyset.

Three statements whatever the number of customers: the tiers, the counts per tier (for the group
headers), and one page of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import session as cookie
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

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
    after: tuple[int, int] | None = None  # (tier id, customer id) of the last row shown

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
            after=after,
        )

    def params(self, **changes) -> dict:
        """Query-string values for a link that keeps the filters."""
        out = {
            "q": self.search or None,
            "tier": self.tier_id,
            "blocked": "1" if self.blocked else None,
            "low": "1" if self.low_balance else None,
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


def _filtered(project: Project, query: Query, low_threshold: int | None) -> Select:
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
    return stmt


def find(session: Session, project: Project, query: Query) -> Page:
    tiers = list(
        session.scalars(
            select(UsageTier)
            .where(UsageTier.project_id == project.id)
            .order_by(UsageTier.key, UsageTier.version)
        )
    )
    base = _filtered(project, query, project.low_balance_tokens)
    filtered = base.subquery()
    counts = {
        tier_id: total
        for tier_id, total in session.execute(
            select(filtered.c.tier_id, func.count()).group_by(filtered.c.tier_id)
        )
    }
    order_tier = func.coalesce(Customer.tier_id, 0)
    stmt = base
    if query.after is not None:
        tier_after, id_after = query.after
        stmt = stmt.where(or_(order_tier > tier_after, (order_tier == tier_after) & (Customer.id > id_after)))
    rows = list(session.scalars(stmt.order_by(order_tier, Customer.id).limit(PAGE + 1)))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    by_id = {t.id: t for t in tiers}
    groups: list[Group] = []
    for customer in rows:
        if not groups or (groups[-1].tier.id if groups[-1].tier else None) != customer.tier_id:
            groups.append(Group(by_id.get(customer.tier_id), counts.get(customer.tier_id, 0)))
        groups[-1].customers.append(customer)
    last = rows[-1] if rows else None
    next_after = f"{last.tier_id or 0}.{last.id}" if more and last else None
    return Page(project, tiers, groups, next_after)
