"""The steps every Stripe fulfilment shares: claim the session, invoice or subscription once,
credit the tokens, keep the tier, link the Stripe customer, record the event."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.customers.operations import assign_tier
from app.db import insert_ignoring_conflict, lock_name
from app.integrations import refunds
from app.integrations.objects import amount, currency
from app.integrations.price_map import Goods
from app.integrations.received import Context, Received
from app.metering.credits import change_balance
from app.models.customer import Customer
from app.models.project import Project
from app.models.purchase import Purchase
from app.models.tier import UsageTier
from app.tiers.operations import latest_version


def claim(
    ctx: Context,
    kind: str,
    stripe_customer: str | None,
    *,
    tokens: int = 0,
    tier_key: str | None = None,
    payment_intent: str | None = None,
    subscription: str | None = None,
) -> Purchase | None:
    """The object's one claim (its unique key); None when another event claimed it first."""
    obj = ctx.obj
    claimed = insert_ignoring_conflict(
        ctx.conn,
        Purchase.__table__,
        dict(
            project_id=ctx.project.id,
            object_id=obj["id"],
            kind=kind,
            stripe_customer_id=stripe_customer,
            payment_intent=payment_intent,
            subscription_id=subscription,
            tokens=tokens,
            tier_key=tier_key,
            amount_total=amount(obj.get("amount_paid" if kind == "invoice" else "amount_total")),
            currency=currency(obj.get("currency")),
            event_id=ctx.event_id,
            created_at=ctx.now,
        ),
        ["project_id", "object_id"],
    )
    return ctx.session.get(Purchase, claimed) if claimed is not None else None


def claimed(session: Session, project: Project, object_id: str) -> Purchase | None:
    return session.scalar(
        select(Purchase).where(Purchase.project_id == project.id, Purchase.object_id == object_id)
    )


def already(ctx: Context) -> Received:
    purchase = claimed(ctx.session, ctx.project, ctx.obj["id"])
    assert purchase is not None
    customer = ctx.session.get(Customer, purchase.customer_id) if purchase.customer_id else None
    return Received(
        "already_fulfilled", f"{purchase.object_id} was fulfilled by {purchase.event_id}", customer
    )


def grant(ctx: Context, purchase: Purchase, customer: Customer, goods: Goods, event_type: str) -> Received:
    """Credit the tokens (one `purchase` entry), assign the tier, link the Stripe customer, record
    the event, then apply a refund that arrived before this purchase."""
    # Locks in one order everywhere (Stripe customer, then payment) so no two fulfilments wait on
    # each other; an invoice's path holds the first already (it is re-entrant).
    customer_lock(ctx, purchase.stripe_customer_id)
    if purchase.payment_intent:
        refunds.payment_lock(ctx, purchase.payment_intent)
    link(ctx, customer, purchase.stripe_customer_id)
    entry = None
    if goods.tokens > 0:
        entry = change_balance(
            ctx.conn,
            customer.id,
            kind="purchase",
            amount=goods.tokens,
            source=ctx.source,
            reason=f"Stripe {purchase.kind} {purchase.object_id}",
            now=ctx.now,
            idempotency_key=f"stripe:{purchase.object_id}",
        )
    note = keep_tier(ctx, customer, goods.tier_key)
    fulfilled(ctx, purchase, customer, entry.id if entry else None)
    ctx.session.refresh(customer)
    tier = ctx.session.get(UsageTier, customer.tier_id) if customer.tier_id else None
    ctx.record(
        event_type,
        customer,
        {
            "purchase": purchase.object_id,
            "subscription": purchase.subscription_id,
            "tokens": goods.tokens,
            "tier": tier_shape(tier),
            "amount_total": purchase.amount_total,
            "currency": purchase.currency,
            "token_balance": customer.token_balance,
        },
    )
    verb = "renewed" if purchase.kind == "invoice" else "credited"
    detail = f"{verb} {goods.tokens:,} tokens from {goods.how}{note or ''}"
    if note is None:
        detail += f"; there is no tier {goods.tier_key!r}, so none was assigned"
    refund = refunds.apply_waiting(ctx, purchase)
    if refund is not None:
        detail += f"; then a refund that came first: {refund.detail}"
    return Received(
        verb if note is not None else "needs_review", detail, customer, entry.id if entry else None
    )


def keep_tier(ctx: Context, customer: Customer, key: str | None) -> str | None:
    """Put the customer on the mapped tier, keeping its version if it is on that tier already.
    The note for the detail; None when there is no such tier."""
    if key is None:
        return ""
    current = ctx.session.get(UsageTier, customer.tier_id) if customer.tier_id else None
    if current is not None and current.key == key:
        return f"; kept tier {key} v{current.version}"
    tier = latest_version(ctx.session, ctx.project, key)
    if tier is None:
        return None
    assign_tier(ctx.session, customer, tier, ctx.source, ctx.now)
    return f"; tier {key} v{tier.version}"


def fulfilled(ctx: Context, purchase: Purchase, customer: Customer, entry_id: int | None) -> None:
    purchase.customer_id, purchase.ledger_entry_id, purchase.fulfilled_at = customer.id, entry_id, ctx.now
    ctx.session.flush()


def link(ctx: Context, customer: Customer, stripe_customer: str | None) -> None:
    """A purchase links its Stripe customer to the customer it credited, and to that customer
    only: the latest purchase decides whom the Stripe customer's later invoices are for."""
    if not stripe_customer or customer.stripe_customer_id == stripe_customer:
        return
    ctx.session.execute(
        update(Customer)
        .where(
            Customer.project_id == ctx.project.id,
            Customer.stripe_customer_id == stripe_customer,
            Customer.id != customer.id,
        )
        .values(stripe_customer_id=None)
        .execution_options(synchronize_session=False)
    )
    customer.stripe_customer_id = stripe_customer


def customer_lock(ctx: Context, stripe_customer: str | None) -> None:
    """An invoice and the session that links its customer may arrive at once."""
    if stripe_customer:
        lock_name(ctx.conn, f"stripe:customer:{ctx.project.id}:{stripe_customer}")


def tier_shape(tier: UsageTier | None) -> dict | None:
    return {"key": tier.key, "version": tier.version} if tier else None
