"""Customer operations shared by the admin, the API and integrations. They flush; the caller commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Invalid, NotFound
from app.events import recorder
from app.metering import periods
from app.models.customer import Customer
from app.models.project import Project
from app.models.tier import UsageTier
from app.tiers.operations import find_version


def assign_tier(session: Session, customer: Customer, tier: UsageTier, source: str, now: datetime) -> bool:
    """Put the customer on this tier version; its period restarts by the tier's rules. False if already there.

    The version is locked from now on (SPEC 4). Nothing is credited: replenishment happens when a
    period ends, and purchases credit tokens themselves.
    """
    if tier.project_id != customer.project_id:
        raise Invalid("that tier belongs to another project", "tier")
    if customer.tier_id == tier.id:
        return False
    previous = session.get(UsageTier, customer.tier_id) if customer.tier_id is not None else None
    start, end = periods.window(periods.parse(tier.period), tier.anchor, now, now)
    customer.tier_id, customer.tier_assigned_at = tier.id, now
    customer.period_start, customer.period_end = start, end
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
    if from_version == to_version:
        raise Invalid("from_version and to_version are the same", "to_version")
    source_tier = find_version(session, project, key, from_version)
    target = find_version(session, project, key, to_version)
    stmt = select(Customer).where(Customer.project_id == project.id, Customer.tier_id == source_tier.id)
    if customer_ids is not None:
        wanted = set(customer_ids)
        stmt = stmt.where(Customer.external_id.in_(wanted))
    moving = list(session.scalars(stmt.order_by(Customer.id)))
    if customer_ids is not None and len(moving) != len(wanted):
        missing = wanted - {c.external_id for c in moving}
        raise NotFound(f"not on {key} v{from_version}: {', '.join(sorted(missing))}", "customer_ids")
    return sum(assign_tier(session, customer, target, source, now) for customer in moving)
