"""Stripe refunds (SPEC 7.5): the refunded share of a purchase's tokens taken back, kept until its
purchase arrives when the refund comes first."""

from __future__ import annotations

from sqlalchemy import select

from app.db import insert_ignoring_conflict, lock_name
from app.integrations.objects import currency, is_amount, stripe_id
from app.integrations.received import PROVIDER, Context, Received, settle_row
from app.metering.credits import take_back
from app.models.customer import Customer
from app.models.purchase import ChargeRefund, InboundWebhook, Purchase


def payment_lock(ctx: Context, payment_intent: str) -> None:
    """A refund and the purchase it belongs to may arrive at once: each takes this lock before
    looking for the other, so one of them always sees both."""
    lock_name(ctx.conn, f"stripe:payment:{ctx.project.id}:{payment_intent}")


def charge_refunded(ctx: Context) -> Received:
    charge = ctx.obj
    payment_intent = stripe_id(charge.get("payment_intent"))
    amount, refunded = charge.get("amount"), charge.get("amount_refunded")
    if payment_intent is None:
        return Received("ignored", "a charge without a payment intent matches no purchase")
    if not is_amount(amount) or amount < 1 or not is_amount(refunded):
        return Received("ignored", "the charge's amount or amount_refunded is not a whole number")
    payment_lock(ctx, payment_intent)
    state = _state(ctx, payment_intent, charge, amount)
    if refunded > state.amount_refunded:  # cumulative, and events come in any order
        state.amount_refunded, state.event_id = refunded, ctx.event_id
    state.charge_id = stripe_id(charge.get("id")) or state.charge_id
    state.amount, state.updated_at = amount, ctx.now
    ctx.session.flush()
    purchase = paid_by(ctx, payment_intent)
    if purchase is None:
        return Received(
            "refund_waiting",
            f"no purchase paid by {payment_intent} has arrived yet: this refund applies when it does",
        )
    return _apply(ctx, purchase, state)


def apply_waiting(ctx: Context, purchase: Purchase) -> Received | None:
    """After a purchase is credited: the refund that arrived before it, if any (its received
    rows are updated with what it did)."""
    if purchase.payment_intent is None:
        return None
    state = ctx.session.scalar(
        select(ChargeRefund).where(
            ChargeRefund.project_id == ctx.project.id, ChargeRefund.payment_intent == purchase.payment_intent
        )
    )
    if state is None or state.amount_refunded == 0:
        return None
    received = _apply(ctx, purchase, state)
    waiting = ctx.session.scalars(
        select(InboundWebhook.event_id).where(
            InboundWebhook.project_id == ctx.project.id,
            InboundWebhook.provider == PROVIDER,
            InboundWebhook.object_id == state.charge_id,
            InboundWebhook.outcome == "refund_waiting",
        )
    ).all()
    settled = Received(
        received.outcome,
        f"when its purchase arrived: {received.detail}",
        received.customer,
        received.entry_id,
    )
    settle_row(ctx.session, ctx.project, list(waiting), settled)
    return received


def paid_by(ctx: Context, payment_intent: str) -> Purchase | None:
    return ctx.session.scalar(
        select(Purchase).where(
            Purchase.project_id == ctx.project.id,
            Purchase.payment_intent == payment_intent,
            Purchase.fulfilled_at.is_not(None),
        )
    )


def _state(ctx: Context, payment_intent: str, charge: dict, amount: int) -> ChargeRefund:
    insert_ignoring_conflict(
        ctx.conn,
        ChargeRefund.__table__,
        dict(
            project_id=ctx.project.id,
            payment_intent=payment_intent,
            charge_id=stripe_id(charge.get("id")) or "",
            amount=amount,
            amount_refunded=0,
            currency=currency(charge.get("currency")),
            tokens_taken_back=0,
            event_id=ctx.event_id,
            updated_at=ctx.now,
        ),
        ["project_id", "payment_intent"],
    )
    state = ctx.session.scalar(
        select(ChargeRefund)
        .where(ChargeRefund.project_id == ctx.project.id, ChargeRefund.payment_intent == payment_intent)
        .execution_options(populate_existing=True)
    )
    assert state is not None
    return state


def _apply(ctx: Context, purchase: Purchase, state: ChargeRefund) -> Received:
    """Take back tokens * refunded / amount, less what earlier refunds of this charge took; a
    prepaid hard-capped balance gives up only what it holds, and the rest is reported (a later
    refund of the charge asks for it again)."""
    customer = ctx.session.get(Customer, purchase.customer_id)
    assert customer is not None
    refunded = min(state.amount_refunded, state.amount)
    share = purchase.tokens * refunded // state.amount
    owed = share - state.tokens_taken_back
    paid = f"{refunded:,} of {state.amount:,} refunded ({state.currency or 'in'} minor units)"
    if owed <= 0:
        return Received("refunded", f"{paid}: earlier refunds took back the {share:,} tokens due", customer)
    entry, taken = take_back(
        ctx.conn,
        customer.id,
        owed,
        source=ctx.source,
        reason=f"Stripe refund of {state.charge_id}: {paid}",
        now=ctx.now,
        # One entry per event that applies a refund (a late, older refund of the charge included).
        idempotency_key=f"stripe:refund:{ctx.event_id}",
    )
    state.tokens_taken_back += taken
    ctx.session.flush()
    ctx.session.refresh(customer)
    ctx.record(
        "purchase.refunded",
        customer,
        {
            "purchase": purchase.object_id,
            "charge": state.charge_id,
            "payment_intent": state.payment_intent,
            "amount": state.amount,
            "amount_refunded": refunded,
            "currency": state.currency,
            "tokens_taken_back": taken,
            "tokens_not_taken_back": owed - taken,
            "token_balance": customer.token_balance,
        },
    )
    detail = f"{paid}: {share:,} of the purchase's {purchase.tokens:,} tokens due back; took back {taken:,}"
    if taken < owed:
        detail += f"; {owed - taken:,} could not be taken from a prepaid hard-capped balance"
    return Received("refunded", detail, customer, entry.id if entry else None)
