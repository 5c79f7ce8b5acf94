"""Why a customer's balance differs from the ledger's last "balance after": calls charge the balance
without a ledger entry (SPEC 5.4), so balance = sum of ledger entries - sum of tokens charged by
calls (SPEC 11.1)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models.customer import Customer
from app.models.ledger import LedgerEntry
from app.models.usage import UsageRecord


@dataclass(frozen=True)
class Reconciliation:
    balance: int
    ledger: int
    charged: int


def reconcile(session: Session, customer: Customer) -> Reconciliation:
    """The three figures read by one statement, so that they come from one moment."""
    ledger = select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
        LedgerEntry.customer_id == customer.id
    )
    charged = select(func.coalesce(func.sum(UsageRecord.tokens_charged), 0)).where(
        UsageRecord.customer_id == customer.id
    )
    row = session.execute(
        select(Customer.token_balance, ledger.scalar_subquery(), charged.scalar_subquery()).where(
            Customer.id == customer.id
        )
    ).one()
    return Reconciliation(balance=int(row[0]), ledger=int(row[1]), charged=int(row[2]))
