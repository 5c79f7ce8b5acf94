"""What a verified Stripe event does (SPEC 7.5). The received event is stored in the transaction
of its effects under a unique key, so a retried, duplicated or concurrent delivery does nothing
more; a checkout session or invoice is claimed once, so its other events credit nothing more."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.customers.operations import assign_tier
from app.db import insert_ignoring_conflict, lock_name
from app.integrations import buyers, refunds
from app.integrations.buyers import Buyer
from app.integrations.objects import amount, currency, mapping, quantity, stripe_id
from app.integrations.price_map import Goods, NothingBought, bought
from app.integrations.received import PROVIDER, Context, Received, settle_row
from app.metering.credits import change_balance
from app.models.customer import Customer
from app.models.project import Project
from app.models.purchase import InboundWebhook, Purchase
from app.models.tier import UsageTier
from app.tiers.operations import ensure_default_tier, latest_version

FULFILLING = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
GRANTING_INVOICES = ("subscription_create", "subscription_cycle")

Lines = list[tuple[str, int]] | None


def seen(session: Session, project: Project, event_id: str) -> bool:
    return (
        session.scalar(
            select(InboundWebhook.id).where(
                InboundWebhook.project_id == project.id,
                InboundWebhook.provider == PROVIDER,
                InboundWebhook.event_id == event_id,
            )
        )
        is not None
    )


def wants_line_items(session: Session, project: Project, event: dict) -> str | None:
    """The checkout session whose line items say what was bought, when the event fulfils one not
    fulfilled yet and the project has a price map and a key to read them with."""
    obj = event["data"]["object"]
    if event["type"] not in FULFILLING or not (project.stripe_prices and project.stripe_api_key):
        return None
    if event["type"] == "checkout.session.completed" and obj.get("payment_status") == "unpaid":
        return None
    session_id = stripe_id(obj.get("id"))
    if session_id is None or _claimed(session, project, session_id) is not None:
        return None
    return session_id


def receive(session: Session, project: Project, event: dict, lines: Lines, now: datetime) -> Received | None:
    """Process the event once (None: it was processed already) and keep it with what it did."""
    obj = event["data"]["object"]
    row_id = insert_ignoring_conflict(
        session.connection(),
        InboundWebhook.__table__,
        dict(
            project_id=project.id,
            provider=PROVIDER,
            event_id=event["id"],
            event_type=event["type"][:100],
            received_at=now,
            livemode=event.get("livemode") is True,
            outcome="ignored",
            detail="",
            object_id=stripe_id(obj.get("id")),
        ),
        ["project_id", "provider", "event_id"],
    )
    if row_id is None:
        return None
    ctx = Context(session, project, event["id"], obj, now)
    received = _handle(ctx, event, lines)
    settle_row(session, project, [event["id"]], received)
    return received


def _handle(ctx: Context, event: dict, lines: Lines) -> Received:
    if event.get("account"):
        return Received("ignored", f"an event of connected account {event['account']}, not of this account")
    handler = HANDLERS.get(event["type"])
    if handler is None:
        return Received("ignored", f"{event['type']} changes nothing in Tollgate")
    if stripe_id(ctx.obj.get("id")) is None:
        return Received("ignored", "the event's object has no id")
    return handler(ctx, lines)


# --- checkout sessions ---------------------------------------------------------------------


def _session_completed(ctx: Context, lines: Lines) -> Received:
    if ctx.obj.get("payment_status") == "unpaid":
        return Received(
            "awaiting_payment",
            "a delayed payment method: credited when checkout.session.async_payment_succeeded arrives",
        )
    return _checkout(ctx, lines)


def _payment_failed(ctx: Context, _lines: Lines) -> Received:
    return Received("payment_failed", "the delayed payment failed: nothing was credited")


def _checkout(ctx: Context, lines: Lines) -> Received:
    if _claimed(ctx.session, ctx.project, ctx.obj["id"]) is not None:  # its line items were not read again
        return _already(ctx)
    mode = ctx.obj.get("mode")
    if mode == "subscription":
        return _subscribe(ctx, lines)
    if mode != "payment":
        return Received("ignored", f"a {mode} session buys nothing")
    try:
        goods = bought(ctx.project.stripe_prices or {}, lines, mapping(ctx.obj.get("metadata")))
    except NothingBought as exc:
        return Received("needs_review", str(exc))
    buyer = _buyer_of_session(ctx.obj)
    found = buyers.find(ctx.session, ctx.project, buyer)
    if found is None and buyer.new_id is None:
        return _nobody(buyer)
    purchase = _claim(ctx, "checkout", buyer, tokens=goods.tokens, tier_key=goods.tier_key)
    if purchase is None:
        return _already(ctx)
    customer = found or buyers.find_or_create(ctx.session, ctx.project, buyer, ctx.source, ctx.now)
    assert customer is not None
    return _grant(ctx, purchase, customer, goods, "purchase.completed")


def _subscribe(ctx: Context, lines: Lines) -> Received:
    """A subscription-mode session: the tier and the Stripe customer link; the tokens come with
    each paid invoice, and any invoice that arrived first is granted now."""
    buyer = _buyer_of_session(ctx.obj)
    if buyers.find(ctx.session, ctx.project, buyer) is None and buyer.new_id is None:
        return _nobody(buyer)
    try:
        tier_key = bought(ctx.project.stripe_prices or {}, lines, mapping(ctx.obj.get("metadata"))).tier_key
    except NothingBought:
        tier_key = None
    purchase = _claim(ctx, "subscription", buyer, tokens=0, tier_key=tier_key)
    if purchase is None:
        return _already(ctx)
    customer = buyers.find_or_create(ctx.session, ctx.project, buyer, ctx.source, ctx.now)
    assert customer is not None
    _customer_lock(ctx, buyer.stripe_customer)
    _link(customer, buyer.stripe_customer)
    note = _keep_tier(ctx, customer, tier_key)
    _fulfilled(ctx, purchase, customer, None)
    granted = _grant_waiting_invoices(ctx, customer, buyer.stripe_customer)
    if note is None:
        detail = f"subscribed, but there is no tier {tier_key!r}, so none was assigned"
    else:
        detail = f"subscribed{note or ' (no tier in the price map or metadata)'}"
    detail += "; tokens come with each paid invoice"
    if granted:
        detail += f"; granted {granted} invoice(s) that arrived first"
    return Received("subscribed" if note is not None else "needs_review", detail, customer)


def _buyer_of_session(obj: dict) -> Buyer:
    return Buyer.of(obj, mapping(obj.get("customer_details")), obj.get("customer_email"))


def _nobody(buyer: Buyer) -> Received:
    return Received(
        "needs_review",
        f"no customer to credit: the session names {buyer.describe()}, and no customer matches "
        "(set client_reference_id on the Payment Link or Checkout Session)",
    )


# --- subscriptions ------------------------------------------------------------------------


def _invoice_paid(ctx: Context, _lines: Lines) -> Received:
    invoice = ctx.obj
    reason = invoice.get("billing_reason")
    if reason not in GRANTING_INVOICES:
        return Received(
            "ignored",
            f"an invoice for {reason}: only subscription_create and subscription_cycle grant tokens",
        )
    subscription, metadata = _subscription_of(invoice)
    try:
        goods = bought(ctx.project.stripe_prices or {}, _invoice_lines(invoice), metadata)
    except NothingBought as exc:
        return Received("needs_review", str(exc))
    buyer = Buyer.of(
        {"metadata": metadata, "customer": invoice.get("customer")}, email=invoice.get("customer_email")
    )
    _customer_lock(ctx, buyer.stripe_customer)
    customer = buyers.find(ctx.session, ctx.project, buyer)
    if customer is None and buyer.metadata_id:
        customer = buyers.find_or_create(ctx.session, ctx.project, buyer, ctx.source, ctx.now)
    purchase = _claim(
        ctx, "invoice", buyer, tokens=goods.tokens, tier_key=goods.tier_key, subscription=subscription
    )
    if purchase is None:
        return _already(ctx)
    if customer is None:
        return Received(
            "invoice_waiting",
            f"no customer is linked to Stripe customer {buyer.stripe_customer} yet: its {goods.tokens:,} "
            "tokens are granted when a checkout session links one",
        )
    return _grant(ctx, purchase, customer, goods, "subscription.renewed")


def _subscription_deleted(ctx: Context, _lines: Lines) -> Received:
    subscription = ctx.obj
    buyer = Buyer.of({"metadata": subscription.get("metadata"), "customer": subscription.get("customer")})
    customer = buyers.find(ctx.session, ctx.project, buyer)
    if customer is None:
        return Received("ignored", f"no customer is linked to {buyer.describe()}")
    previous = ctx.session.get(UsageTier, customer.tier_id) if customer.tier_id else None
    default = _default_tier(ctx)
    assign_tier(ctx.session, customer, default, ctx.source, ctx.now)
    ctx.record(
        "subscription.cancelled",
        customer,
        {
            "subscription": subscription.get("id"),
            "from": _tier_shape(previous),
            "to": _tier_shape(default),
        },
    )
    return Received("cancelled", f"moved to the default tier {default.key} v{default.version}", customer)


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
        goods = Goods(purchase.tokens, purchase.tier_key, f"invoice {purchase.object_id}")
        received = _grant(later, purchase, customer, goods, "subscription.renewed")
        received.detail += f" (when {ctx.event_id} linked the customer)"
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


def _invoice_payment_intent(invoice: dict) -> str | None:
    """Older API versions name it on the invoice; current ones in its payments."""
    direct = stripe_id(invoice.get("payment_intent"))
    if direct is not None:
        return direct
    for payment in mapping(invoice.get("payments")).get("data") or []:
        found = stripe_id(mapping(mapping(payment).get("payment")).get("payment_intent"))
        if found is not None:
            return found
    return None


# --- the shared steps ---------------------------------------------------------------------


def _claim(
    ctx: Context,
    kind: str,
    buyer: Buyer,
    *,
    tokens: int,
    tier_key: str | None,
    subscription: str | None = None,
) -> Purchase | None:
    """The session's or invoice's one claim; None when another event claimed it first."""
    obj = ctx.obj
    is_invoice = kind == "invoice"
    payment_intent = _invoice_payment_intent(obj) if is_invoice else stripe_id(obj.get("payment_intent"))
    claimed = insert_ignoring_conflict(
        ctx.conn,
        Purchase.__table__,
        dict(
            project_id=ctx.project.id,
            object_id=obj["id"],
            kind=kind,
            stripe_customer_id=buyer.stripe_customer,
            payment_intent=payment_intent,
            subscription_id=subscription or stripe_id(obj.get("subscription")),
            tokens=tokens,
            tier_key=tier_key,
            amount_total=amount(obj.get("amount_paid" if is_invoice else "amount_total")),
            currency=currency(obj.get("currency")),
            event_id=ctx.event_id,
            created_at=ctx.now,
        ),
        ["project_id", "object_id"],
    )
    return ctx.session.get(Purchase, claimed) if claimed is not None else None


def _claimed(session: Session, project: Project, object_id: str) -> Purchase | None:
    return session.scalar(
        select(Purchase).where(Purchase.project_id == project.id, Purchase.object_id == object_id)
    )


def _already(ctx: Context) -> Received:
    purchase = _claimed(ctx.session, ctx.project, ctx.obj["id"])
    assert purchase is not None
    customer = ctx.session.get(Customer, purchase.customer_id) if purchase.customer_id else None
    return Received(
        "already_fulfilled", f"{purchase.object_id} was fulfilled by {purchase.event_id}", customer
    )


def _grant(ctx: Context, purchase: Purchase, customer: Customer, goods: Goods, event_type: str) -> Received:
    """Credit the tokens (one `purchase` entry), assign the tier, link the Stripe customer, record
    the event, then apply a refund that arrived before this purchase."""
    if purchase.payment_intent:
        refunds.payment_lock(ctx, purchase.payment_intent)
    _link(customer, purchase.stripe_customer_id)
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
    note = _keep_tier(ctx, customer, goods.tier_key)
    _fulfilled(ctx, purchase, customer, entry.id if entry else None)
    ctx.session.refresh(customer)
    tier = ctx.session.get(UsageTier, customer.tier_id) if customer.tier_id else None
    ctx.record(
        event_type,
        customer,
        {
            "purchase": purchase.object_id,
            "subscription": purchase.subscription_id,
            "tokens": goods.tokens,
            "tier": _tier_shape(tier),
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


def _keep_tier(ctx: Context, customer: Customer, key: str | None) -> str | None:
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


def _fulfilled(ctx: Context, purchase: Purchase, customer: Customer, entry_id: int | None) -> None:
    purchase.customer_id, purchase.ledger_entry_id, purchase.fulfilled_at = customer.id, entry_id, ctx.now
    ctx.session.flush()


def _link(customer: Customer, stripe_customer: str | None) -> None:
    """A purchase links its Stripe customer to the customer it credited."""
    if stripe_customer and customer.stripe_customer_id != stripe_customer:
        customer.stripe_customer_id = stripe_customer


def _customer_lock(ctx: Context, stripe_customer: str | None) -> None:
    """An invoice and the session that links its customer may arrive at once."""
    if stripe_customer:
        lock_name(ctx.conn, f"stripe:customer:{ctx.project.id}:{stripe_customer}")


def _tier_shape(tier: UsageTier | None) -> dict | None:
    return {"key": tier.key, "version": tier.version} if tier else None


HANDLERS: dict[str, Callable[[Context, Lines], Received]] = {
    "checkout.session.completed": _session_completed,
    "checkout.session.async_payment_succeeded": _checkout,
    "checkout.session.async_payment_failed": _payment_failed,
    "charge.refunded": refunds.charge_refunded,
    "invoice.paid": _invoice_paid,
    "customer.subscription.deleted": _subscription_deleted,
}
