"""Checkout sessions (SPEC 7.5): a paid one credits what it bought to the customer it names; an
unpaid one waits for its delayed payment; a subscription-mode one starts a subscription."""

from __future__ import annotations

from app.integrations import buyers, grants, subscriptions
from app.integrations.buyers import Buyer
from app.integrations.objects import mapping, stripe_id
from app.integrations.price_map import NothingBought, bought
from app.integrations.received import Context, Received

PAID = ("paid", "no_payment_required")  # the latter: a 100% coupon or a free trial


def completed(ctx: Context) -> Received:
    status = ctx.obj.get("payment_status")
    if status == "unpaid":
        return Received(
            "awaiting_payment",
            "a delayed payment method: credited when checkout.session.async_payment_succeeded arrives",
        )
    if status not in PAID:
        return Received("ignored", f"payment_status {status!r} is neither paid nor unpaid")
    return succeeded(ctx)


def payment_failed(ctx: Context) -> Received:
    return Received("payment_failed", "the delayed payment failed: nothing was credited")


def succeeded(ctx: Context) -> Received:
    # Claimed already: its line items were not asked for again, so say so before reading them.
    if grants.claimed(ctx.session, ctx.project, ctx.obj["id"]) is not None:
        return grants.already(ctx)
    mode = ctx.obj.get("mode")
    buyer = Buyer.of(ctx.obj, mapping(ctx.obj.get("customer_details")), ctx.obj.get("customer_email"))
    if mode == "subscription":
        return subscriptions.subscribe(ctx, buyer)
    if mode != "payment":
        return Received("ignored", f"a {mode} session buys nothing")
    # Locks in one order (grants.grant): this Stripe customer's first, before any customer is made.
    grants.customer_lock(ctx, buyer.stripe_customer)
    try:
        goods = bought(ctx.project.stripe_prices or {}, ctx.fetched.lines, mapping(ctx.obj.get("metadata")))
    except NothingBought as exc:
        return Received("needs_review", str(exc))
    found = buyers.find(ctx.session, ctx.project, buyer)
    if found is None and buyer.new_id is None:
        return buyers.nobody(buyer)
    purchase = grants.claim(
        ctx,
        "checkout",
        buyer.stripe_customer,
        tokens=goods.tokens,
        tier_key=goods.tier_key,
        payment_intent=stripe_id(ctx.obj.get("payment_intent")),
    )
    if purchase is None:
        return grants.already(ctx)
    customer = found or buyers.find_or_create(ctx.session, ctx.project, buyer, ctx.source, ctx.now)
    assert customer is not None
    return grants.grant(ctx, purchase, customer, goods, "purchase.completed")


def wants_paid(obj: dict, event_type: str) -> bool:
    """Whether this session event fulfils (so its line items matter)."""
    return event_type != "checkout.session.completed" or obj.get("payment_status") in PAID
