"""Stripe subscriptions (SPEC 7.5): the checkout session sets the tier and links the Stripe
customer; each paid invoice grants its period's tokens; a deleted subscription moves the customer
to the project's default tier."""

from __future__ import annotations

from sqlalchemy import select

from app.customers.operations import assign_tier
from app.integrations import buyers, grants
from app.integrations.buyers import Buyer
from app.integrations.objects import mapping, quantity, stripe_id
from app.integrations.price_map import Goods, NothingBought, bought
from app.integrations.received import Context, Received, settle_row
from app.models.customer import Customer
from app.models.purchase import Purchase
from app.models.tier import UsageTier
from app.tiers.operations import ensure_default_tier

GRANTING = ("subscription_create", "subscription_cycle")


def subscribe(ctx: Context, buyer: Buyer) -> Received:
    """A subscription-mode session: the tier and the Stripe customer link; the tokens come with
    each paid invoice, and any invoice that arrived first is granted now."""
    # First, before any customer is read or made: an invoice of this Stripe customer may be here too.
    grants.customer_lock(ctx, buyer.stripe_customer)
    if buyers.find(ctx.session, ctx.project, buyer) is None and buyer.new_id is None:
        return buyers.nobody(buyer)
    try:
        metadata = mapping(ctx.obj.get("metadata"))
        tier_key = bought(ctx.project.stripe_prices or {}, ctx.fetched.lines, metadata).tier_key
    except NothingBought:
        tier_key = None
    subscription = stripe_id(ctx.obj.get("subscription"))
    cancelled = subscription is not None and _cancelled(ctx, subscription)
    if cancelled:  # its deletion came first: the customer is linked, but gets no paid tier
        tier_key = None
    purchase = grants.claim(
        ctx, "subscription", buyer.stripe_customer, tier_key=tier_key, subscription=subscription
    )
    if purchase is None:
        return grants.already(ctx)
    customer = buyers.find_or_create(ctx.session, ctx.project, buyer, ctx.source, ctx.now)
    assert customer is not None
    grants.link(ctx, customer, buyer.stripe_customer)
    note = grants.keep_tier(ctx, customer, tier_key)
    grants.fulfilled(ctx, purchase, customer, None)
    granted = _grant_waiting_invoices(ctx, customer, buyer.stripe_customer)
    if note is None:
        detail = f"subscribed, but there is no tier {tier_key!r}, so none was assigned"
    else:
        detail = f"subscribed{note or ' (no tier in the price map or metadata)'}"
    if cancelled:
        detail = f"{subscription} was cancelled before this session arrived: linked, no tier set"
    detail += "; tokens come with each paid invoice"
    if granted:
        detail += f"; granted {granted} invoice(s) that arrived first"
    return Received("subscribed" if note is not None else "needs_review", detail, customer)


def invoice_paid(ctx: Context) -> Received:
    invoice = ctx.obj
    reason = invoice.get("billing_reason")
    if reason not in GRANTING:
        return Received(
            "ignored",
            f"an invoice for {reason}: only subscription_create and subscription_cycle grant tokens",
        )
    subscription, metadata = _subscription_of(invoice)
    try:
        goods = bought(ctx.project.stripe_prices or {}, _invoice_lines(invoice), metadata)
    except NothingBought as exc:
        return Received("needs_review", str(exc))
    buyer = Buyer.of({"metadata": metadata, "customer": invoice.get("customer")})
    grants.customer_lock(ctx, buyer.stripe_customer)
    customer = _subscriber(ctx, buyer, subscription)
    if customer is None and buyer.metadata_id:
        customer = buyers.find_or_create(ctx.session, ctx.project, buyer, ctx.source, ctx.now)
    note = ""
    if subscription and _cancelled(ctx, subscription):
        goods, note = Goods(goods.tokens, None, goods.how), f"; {subscription} is cancelled: the tier stays"
    purchase = grants.claim(
        ctx,
        "invoice",
        buyer.stripe_customer,
        tokens=goods.tokens,
        tier_key=goods.tier_key,
        payment_intent=_payment_intent(invoice) or ctx.fetched.payment_intent,
        subscription=subscription,
    )
    if purchase is None:
        return grants.already(ctx)
    if customer is None:
        return Received(
            "invoice_waiting",
            f"no customer is linked to {subscription or buyer.stripe_customer} yet: its {goods.tokens:,} "
            "tokens are granted when its checkout session arrives",
        )
    received = grants.grant(ctx, purchase, customer, goods, "subscription.renewed")
    received.detail += note
    if purchase.payment_intent is None and ctx.fetched.unasked:
        received.detail += (
            f"; what paid it is not known ({ctx.fetched.unasked}), so a refund of it finds no purchase"
        )
    return received


def subscription_deleted(ctx: Context) -> Received:
    """Back to the default tier, if this is the customer's current subscription."""
    subscription = ctx.obj["id"]
    buyer = Buyer.of({"metadata": ctx.obj.get("metadata"), "customer": ctx.obj.get("customer")})
    grants.customer_lock(ctx, buyer.stripe_customer)  # its session or an invoice may be here too
    customer = _subscriber(ctx, buyer, subscription)
    if customer is None:
        # Kept: a session of this subscription that arrives later sets no paid tier.
        if grants.claim(ctx, "cancellation", buyer.stripe_customer, subscription=subscription) is None:
            return grants.already(ctx)
        return Received(
            "cancelled",
            f"no customer is linked to {subscription} yet: its session, if it comes, sets no tier",
        )
    current = _latest_subscription(ctx, customer)
    if current is not None and current != subscription:
        return Received(
            "ignored", f"not {customer.external_id}'s current subscription ({current} is)", customer
        )
    if grants.claim(ctx, "cancellation", buyer.stripe_customer, subscription=subscription) is None:
        return grants.already(ctx)
    previous = ctx.session.get(UsageTier, customer.tier_id) if customer.tier_id else None
    default = _default_tier(ctx)
    assign_tier(ctx.session, customer, default, ctx.source, ctx.now)
    ctx.record(
        "subscription.cancelled",
        customer,
        {"subscription": subscription, "from": grants.tier_shape(previous), "to": grants.tier_shape(default)},
    )
    return Received("cancelled", f"moved to the default tier {default.key} v{default.version}", customer)


def _subscriber(ctx: Context, buyer: Buyer, subscription: str | None) -> Customer | None:
    """Whom a subscription's invoice or deletion is for: the subscription's
    `metadata.tollgate_customer_id`, else the customer its checkout session subscribed, else the
    customer linked to its Stripe customer. Never by email: an invoice whose customer is not known
    waits for its session instead."""
    if buyer.metadata_id:
        named = buyers.find(ctx.session, ctx.project, Buyer(metadata_id=buyer.metadata_id))
        if named is not None:
            return named
    if subscription:
        pk = ctx.session.scalar(
            select(Purchase.customer_id)
            .where(
                Purchase.project_id == ctx.project.id,
                Purchase.kind == "subscription",
                Purchase.subscription_id == subscription,
                Purchase.customer_id.is_not(None),
            )
            .limit(1)
        )
        if pk is not None:
            return ctx.session.get(Customer, pk)
    return buyers.find(ctx.session, ctx.project, Buyer(stripe_customer=buyer.stripe_customer))


def _latest_subscription(ctx: Context, customer: Customer) -> str | None:
    return ctx.session.scalar(
        select(Purchase.subscription_id)
        .where(
            Purchase.project_id == ctx.project.id,
            Purchase.customer_id == customer.id,
            Purchase.kind == "subscription",
            Purchase.subscription_id.is_not(None),
        )
        .order_by(Purchase.id.desc())
        .limit(1)
    )


def _cancelled(ctx: Context, subscription: str) -> bool:
    found = grants.claimed(ctx.session, ctx.project, subscription)
    return found is not None and found.kind == "cancellation"


def _default_tier(ctx: Context) -> UsageTier:
    tier = ctx.session.get(UsageTier, ctx.project.default_tier_id) if ctx.project.default_tier_id else None
    return tier or ensure_default_tier(ctx.session, ctx.project)


def _grant_waiting_invoices(ctx: Context, customer: Customer, stripe_customer: str | None) -> int:
    if stripe_customer is None:
        return 0
    waiting = ctx.session.scalars(
        select(Purchase)
        .where(
            Purchase.project_id == ctx.project.id,
            Purchase.stripe_customer_id == stripe_customer,
            Purchase.kind == "invoice",
            Purchase.customer_id.is_(None),
        )
        .order_by(Purchase.id)
    ).all()
    for purchase in waiting:
        later = Context(ctx.session, ctx.project, purchase.event_id, ctx.obj, ctx.now)
        ended = purchase.subscription_id is not None and _cancelled(ctx, purchase.subscription_id)
        goods = Goods(purchase.tokens, None if ended else purchase.tier_key, f"invoice {purchase.object_id}")
        received = grants.grant(later, purchase, customer, goods, "subscription.renewed")
        received.detail += f", when {ctx.event_id} linked the customer"
        settle_row(ctx.session, ctx.project, [purchase.event_id], received)
    return len(waiting)


def _subscription_of(invoice: dict) -> tuple[str | None, dict]:
    """The subscription id and its metadata, where current API versions put them
    (parent.subscription_details), else where older ones did."""
    details = mapping(mapping(invoice.get("parent")).get("subscription_details"))
    subscription = stripe_id(details.get("subscription")) or stripe_id(invoice.get("subscription"))
    older = mapping(mapping(invoice.get("subscription_details")).get("metadata"))
    return subscription, mapping(details.get("metadata")) or older


def _invoice_lines(invoice: dict) -> list[tuple[str, int]]:
    found = []
    for line in mapping(invoice.get("lines")).get("data") or []:
        line = mapping(line)
        price = stripe_id(mapping(mapping(line.get("pricing")).get("price_details")).get("price"))
        price = price or stripe_id(line.get("price"))
        if price is not None:
            found.append((price, quantity(line.get("quantity"))))
    return found


def _payment_intent(invoice: dict) -> str | None:
    """Older API versions name it on the invoice; current ones in its `payments`, when the
    endpoint includes them (else it was asked of Stripe's API: ctx.fetched)."""
    direct = stripe_id(invoice.get("payment_intent"))
    if direct is not None:
        return direct
    payments = [mapping(p) for p in mapping(invoice.get("payments")).get("data") or []]
    payments.sort(key=lambda p: (p.get("status") != "paid", not p.get("is_default")))
    for payment in payments:
        found = stripe_id(mapping(payment.get("payment")).get("payment_intent"))
        if found is not None:
            return found
    return None


def needs_payment_intent(invoice: dict) -> bool:
    return invoice.get("billing_reason") in GRANTING and _payment_intent(invoice) is None
