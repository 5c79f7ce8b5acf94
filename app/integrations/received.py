"""What one Stripe event did, and the context its handlers share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, update
from sqlalchemy.orm import Session

from app.events import recorder
from app.models.customer import Customer
from app.models.project import Project
from app.models.purchase import InboundWebhook

PROVIDER = "stripe"


@dataclass
class Received:
    outcome: str  # one of app.models.purchase.OUTCOMES
    detail: str
    customer: Customer | None = None
    entry_id: int | None = None


@dataclass(frozen=True)
class FromStripe:
    """What Stripe's API said about the event's object, asked before the write transaction."""

    lines: list[tuple[str, int]] | None = None  # a checkout session's (price id, quantity)
    payment_intent: str | None = None  # what paid an invoice, when the event does not say
    unasked: str | None = None  # why that payment intent is not known (it decides nothing else)


@dataclass(frozen=True)
class Context:
    session: Session
    project: Project
    event_id: str
    obj: dict  # the event's data.object
    now: datetime
    fetched: FromStripe = FromStripe()

    @property
    def conn(self) -> Connection:
        return self.session.connection()

    @property
    def source(self) -> str:
        return f"stripe:{self.event_id}"

    def record(self, type: str, customer: Customer, data: dict) -> None:
        recorder.record(
            self.conn,
            project_id=self.project.id,
            type=type,
            now=self.now,
            customer_pk=customer.id,
            customer_external_id=customer.external_id,
            data={"customer_id": customer.external_id, **data, "stripe_event_id": self.event_id},
        )


def settle_row(session: Session, project: Project, event_ids: list[str], received: Received) -> None:
    """Write what an event did onto its received row(s): at once, or later for an event that
    waited (a refund before its purchase, an invoice before its customer)."""
    customer = received.customer
    session.execute(
        update(InboundWebhook)
        .where(
            InboundWebhook.project_id == project.id,
            InboundWebhook.provider == PROVIDER,
            InboundWebhook.event_id.in_(event_ids),
        )
        .values(
            outcome=received.outcome,
            detail=received.detail[:2000],
            customer_id=customer.id if customer else None,
            customer_external_id=customer.external_id if customer else None,
            ledger_entry_id=received.entry_id,
        )
    )
