"""What a verified Stripe event does (SPEC 7.5). The received event is stored in the transaction
of its effects under a unique key, so a retried, duplicated or concurrent delivery does nothing
more; a checkout session, invoice or cancellation is claimed once, so its other events credit
nothing more."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import insert_ignoring_conflict
from app.integrations import checkout, grants, refunds, subscriptions
from app.integrations.objects import stripe_id
from app.integrations.received import PROVIDER, Context, FromStripe, Received, settle_row
from app.models.project import Project
from app.models.purchase import InboundWebhook

FULFILLING = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
# Stripe's API could not be asked: the event is shown, and processed when Stripe sends it again.
API_ERROR = "api_error"

HANDLERS: dict[str, Callable[[Context], Received]] = {
    "checkout.session.completed": checkout.completed,
    "checkout.session.async_payment_succeeded": checkout.succeeded,
    "checkout.session.async_payment_failed": checkout.payment_failed,
    "charge.refunded": refunds.charge_refunded,
    "invoice.paid": subscriptions.invoice_paid,
    "customer.subscription.deleted": subscriptions.subscription_deleted,
}


def seen(session: Session, project: Project, event_id: str) -> bool:
    """Processed already (an event whose Stripe API call failed is not: its retry is processed)."""
    outcome = session.scalar(
        select(InboundWebhook.outcome).where(
            InboundWebhook.project_id == project.id,
            InboundWebhook.provider == PROVIDER,
            InboundWebhook.event_id == event_id,
        )
    )
    return outcome is not None and outcome != API_ERROR


def wanted(session: Session, project: Project, event: dict) -> tuple[str, str] | None:
    """What to ask Stripe's API before the event can be processed, when the project has a key:
    ("line_items", session id) for a session to fulfil by the price map, ("payment_intent",
    invoice id) for a granting invoice that does not say what paid it (refunds find it by that)."""
    obj, kind = event["data"]["object"], event["type"]
    object_id = stripe_id(obj.get("id"))
    if not project.stripe_api_key or object_id is None or event.get("account"):
        return None  # a connected account's event is ignored: nothing to ask
    if grants.claimed(session, project, object_id) is not None:
        return None
    if kind in FULFILLING and project.stripe_prices and checkout.wants_paid(obj, kind):
        return ("line_items", object_id)
    if kind == "invoice.paid" and subscriptions.needs_payment_intent(obj):
        return ("payment_intent", object_id)
    return None


def receive(
    session: Session, project: Project, event: dict, fetched: FromStripe, now: datetime
) -> Received | None:
    """Process the event once (None: it was processed already) and keep it with what it did."""
    if not _take(session, project, event, now):
        return None
    obj = event["data"]["object"]
    ctx = Context(session, project, event["id"], obj, now, fetched)
    received = _handle(ctx, event)
    settle_row(session, project, [event["id"]], received)
    return received


def record_api_error(session: Session, project: Project, event: dict, message: str, now: datetime) -> None:
    """Show an event Stripe's API could not help with; its retry takes the row over."""
    if _insert(session, project, event, now, API_ERROR, message) is None:
        session.execute(
            update(InboundWebhook)
            .where(_row(project, event["id"]), InboundWebhook.outcome == API_ERROR)
            .values(detail=message[:2000])
        )


def _take(session: Session, project: Project, event: dict, now: datetime) -> bool:
    """The event's row, new, or taken over from an earlier attempt whose Stripe call failed (one
    taker only: the update waits for, then re-reads, a concurrent one)."""
    if _insert(session, project, event, now, "ignored", "") is not None:
        return True
    taken = session.execute(
        update(InboundWebhook)
        .where(_row(project, event["id"]), InboundWebhook.outcome == API_ERROR)
        .values(outcome="ignored", detail="", received_at=now)
        .returning(InboundWebhook.id)
    ).first()
    return taken is not None


def _insert(session: Session, project: Project, event: dict, now: datetime, outcome: str, detail: str):
    obj = event["data"]["object"]
    return insert_ignoring_conflict(
        session.connection(),
        InboundWebhook.__table__,
        dict(
            project_id=project.id,
            provider=PROVIDER,
            event_id=event["id"],
            event_type=event["type"][:100],
            received_at=now,
            livemode=event.get("livemode") is True,
            outcome=outcome,
            detail=detail[:2000],
            object_id=stripe_id(obj.get("id")),
        ),
        ["project_id", "provider", "event_id"],
    )


def _row(project: Project, event_id: str):
    return (
        (InboundWebhook.project_id == project.id)
        & (InboundWebhook.provider == PROVIDER)
        & (InboundWebhook.event_id == event_id)
    )


def _handle(ctx: Context, event: dict) -> Received:
    if event.get("account"):
        return Received("ignored", f"an event of connected account {event['account']}, not of this account")
    handler = HANDLERS.get(event["type"])
    if handler is None:
        return Received("ignored", f"{event['type']} changes nothing in Tollgate")
    if stripe_id(ctx.obj.get("id")) is None:
        return Received("ignored", "the event's object has no id")
    return handler(ctx)
