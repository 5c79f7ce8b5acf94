"""What the usage page shows a customer: its standing this period (the admin's and the API's own
numbers) and its last calls; and the same as SPEC 10's JSON."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.customers.operations import is_awaiting
from app.customers.standing import Standing, TierUse, standing, usage_shape
from app.db import iso
from app.metering.pricing import to_usd, usd_str
from app.models.customer import Customer
from app.models.usage import UsageRecord

LAST_CALLS = 20


@dataclass(frozen=True)
class Summary:
    customer: Customer
    standing: Standing
    calls: list[UsageRecord]
    awaiting: bool  # in the approval queue: its calls are refused until an admin approves it

    def refusal(self) -> str | None:
        """Why the customer's calls are refused right now, if they are: "blocked", "awaiting"
        (approval) or "no_tokens" (a prepaid plan with nothing left); the first that applies."""
        tier = self.standing.tier
        if self.customer.blocked:
            return "blocked"
        # Only a prepaid plan (the hold's default without a tier) stops at an empty balance: a
        # postpaid customer waiting in the queue is still served.
        if not (tier is None or tier.prepaid) or self.customer.token_balance > 0:
            return None
        return "awaiting" if self.awaiting else "no_tokens"

    def model_tier_rows(self) -> list[tuple[str, TierUse]]:
        """The model tiers worth a line on the page: those with a limit, or used this period."""
        return [
            (name, use)
            for name, use in self.standing.model_tiers.items()
            if use.limit_calls is not None or use.limit_tokens is not None or use.calls or use.tokens
        ]


def summarize(session: Session, customer: Customer) -> Summary:
    """The customer's standing and its last calls, newest first (nothing of any other customer)."""
    calls = session.scalars(
        select(UsageRecord)
        .where(UsageRecord.customer_id == customer.id)
        .order_by(UsageRecord.id.desc())
        .limit(LAST_CALLS)
    )
    return Summary(customer, standing(session, customer), list(calls), is_awaiting(session, customer))


def as_json(summary: Summary) -> dict:
    """SPEC 10: `{"customer_id", "name", "token_balance", "tier", "usage", "calls"}`."""
    customer, tier = summary.customer, summary.standing.tier
    return {
        "customer_id": customer.external_id,
        "name": customer.name,
        "token_balance": customer.token_balance,
        "tier": {"key": tier.key, "version": tier.version, "name": tier.name} if tier else None,
        "usage": usage_shape(customer, summary.standing),
        "calls": [_call(record) for record in summary.calls],
    }


def _call(record: UsageRecord) -> dict:
    return {
        "at": iso(record.created_at),
        "model": record.model_served,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cost_usd": usd_str(record.cost_nusd),
    }


def exact_usd(nusd: int) -> str:
    """A call's cost to the nano-dollar, as the customer was charged: $0.0000075, $0.0123, $1.50
    (the admin rounds dust to "<$0.0001"; a customer checking a charge wants the figure)."""
    value = to_usd(nusd).normalize()
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:  # at least the cents
        value = value.quantize(Decimal("0.01"))
    return f"{'-' if value < 0 else ''}${abs(value):,f}"
