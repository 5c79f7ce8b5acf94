"""Opening a customer's account: the row, its initial grant and its event, or nothing at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, update

from app.db import insert_ignoring_conflict
from app.events import recorder
from app.metering import periods
from app.metering.allowance import TierRules
from app.metering.quota import customers, ledger, tiers


@dataclass(frozen=True)
class Defaults:
    """The project's settings for new customers."""

    project_id: int
    initial_tokens: int
    tier_id: int | None
    shedding_tier: str
    allowed_regions: tuple[str, ...]
    tier_rules: TierRules | None = None


def open_account(
    conn: Connection,
    defaults: Defaults,
    external_id: str,
    name: str | None,
    now: datetime,
    source: str,
    *,
    calling: bool = False,
) -> int | None:
    """Create the customer with the project's defaults; None if it already existed. `calling`: made
    by its first call (the proxy), so seen now; one made by an admin or the API has not been seen.

    Concurrent first calls race on the (project, customer_id) unique key: exactly one inserts,
    and only that one writes the initial grant and the event.
    """
    start, end = now, None
    if defaults.tier_rules is not None:
        start, end = periods.window(defaults.tier_rules.period, defaults.tier_rules.anchor, now, now)
    pk = insert_ignoring_conflict(
        conn,
        customers,
        dict(
            project_id=defaults.project_id,
            external_id=external_id,
            name=name or external_id,
            token_balance=defaults.initial_tokens,
            reserved_tokens=0,
            reserved_nusd=0,
            tier_id=defaults.tier_id,
            tier_assigned_at=now,
            period_start=start,
            period_end=end,
            shedding_tier=defaults.shedding_tier,
            allowed_regions=list(defaults.allowed_regions),
            blocked=False,
            spend_nusd=0,
            low_balance_notified=False,
            metadata={},
            created_at=now,
            last_seen_at=now if calling else None,
        ),
        ["project_id", "external_id"],
    )
    if pk is None:
        return None
    conn.execute(
        ledger.insert().values(
            project_id=defaults.project_id,
            customer_id=pk,
            kind="initial_grant",
            amount=defaults.initial_tokens,
            balance_after=defaults.initial_tokens,
            source=source,
            reason="new customer",
            created_at=now,
        )
    )
    if defaults.tier_id is not None:
        # A version a customer has been assigned to is immutable from now on (SPEC 4).
        conn.execute(
            update(tiers).where(tiers.c.id == defaults.tier_id, tiers.c.locked.is_(False)).values(locked=True)
        )
    recorder.record(
        conn,
        project_id=defaults.project_id,
        type="customer.created",
        now=now,
        customer_pk=pk,
        customer_external_id=external_id,
        data={
            "customer_id": external_id,
            "name": name or external_id,
            "token_balance": defaults.initial_tokens,
        },
    )
    if defaults.initial_tokens == 0:  # no access until tokens are added: the approval queue (SPEC 6)
        recorder.record(
            conn,
            project_id=defaults.project_id,
            type="customer.awaiting_approval",
            now=now,
            customer_pk=pk,
            customer_external_id=external_id,
            data={"customer_id": external_id, "name": name or external_id},
        )
    return pk
