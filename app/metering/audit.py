"""Checks of the SPEC 11 invariants that the database alone can prove (`flask ledger verify`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from app.metering.quota import customers, ledger, tiers, usage_records


@dataclass(frozen=True)
class Breach:
    customer_id: str
    project_id: int
    what: str


def _sums(conn: Connection, table, column) -> dict[int, int]:
    rows = conn.execute(
        select(table.c.customer_id, func.sum(column))
        .where(table.c.customer_id.is_not(None))
        .group_by(table.c.customer_id)
    )
    return {cid: int(total or 0) for cid, total in rows}


def verify(conn: Connection) -> list[Breach]:
    """Balance = Σ ledger - Σ charged (11.1); no capped prepaid balance below 0 (11.2); no negative
    hold; a customer's tokens_unbilled = Σ its usage records' (SPEC 5.2)."""
    credited = _sums(conn, ledger, ledger.c.amount)
    charged = _sums(conn, usage_records, usage_records.c.tokens_charged)
    unbilled = _sums(conn, usage_records, usage_records.c.tokens_unbilled)
    breaches = []
    rows = conn.execute(
        select(
            customers.c.id,
            customers.c.project_id,
            customers.c.external_id,
            customers.c.token_balance,
            customers.c.reserved_tokens,
            customers.c.tokens_unbilled,
            tiers.c.prepaid,
            tiers.c.hard_cap,
        ).outerjoin(tiers, tiers.c.id == customers.c.tier_id)
    )
    for row in rows:
        expected = credited.get(row.id, 0) - charged.get(row.id, 0)
        if row.token_balance != expected:
            breaches.append(
                Breach(
                    row.external_id,
                    row.project_id,
                    f"balance {row.token_balance} != ledger {credited.get(row.id, 0)} "
                    f"- charged {charged.get(row.id, 0)} = {expected}",
                )
            )
        if row.prepaid and row.hard_cap and row.token_balance < 0:
            breaches.append(
                Breach(
                    row.external_id,
                    row.project_id,
                    f"prepaid hard-capped balance is negative ({row.token_balance})",
                )
            )
        if row.tokens_unbilled != unbilled.get(row.id, 0):
            breaches.append(
                Breach(
                    row.external_id,
                    row.project_id,
                    f"tokens_unbilled {row.tokens_unbilled} != Σ usage records' {unbilled.get(row.id, 0)}",
                )
            )
        if row.reserved_tokens < 0:
            breaches.append(Breach(row.external_id, row.project_id, f"negative hold {row.reserved_tokens}"))
    return breaches
