"""Refunds, subscription invoices and cancellations from Stripe (SPEC 7.5; issue 12 acceptance 4)."""

from __future__ import annotations

import threading

import pytest

from app.customers.operations import find_customer
from app.db import now_utc
from app.extensions import db
from app.integrations import grants, refunds, subscriptions
from app.metering.credits import add_or_set
from app.models import UsageTier
from tests.integrations.conftest import (
    PACK,
    PLUS,
    Stripe,
    charge,
    checkout_session,
    event,
    invoice,
    new_id,
)


def _bought(stripe: Stripe, stripe_api, customer_id: str = "alice", packs: int = 2, **session) -> dict:
    """A paid session for `packs` times PACK (1,000 tokens each) paying 1,000 cents each."""
    obj = checkout_session(client_reference_id=customer_id, amount_total=1000 * packs, **session)
    stripe_api.add_session(obj["id"], [(PACK, packs)])
    assert stripe.deliver(event("checkout.session.completed", obj)) == "credited"
    return obj


def _refund(
    stripe: Stripe, session: dict, refunded: int, amount: int | None = None, charge_id: str = "ch_1"
) -> str:
    obj = charge(session["payment_intent"], amount or session["amount_total"], refunded, charge_id)
    return stripe.deliver(event("charge.refunded", obj))


def _set_balance(stripe: Stripe, customer_id: str, tokens: int) -> None:
    customer = find_customer(db.session, stripe.world.project, customer_id)
    add_or_set(
        db.session.connection(), customer.id, "set", tokens, source="tests", reason="spent", now=now_utc()
    )
    stripe.world.commit()


def _tier(stripe: Stripe, customer_id: str) -> tuple[str, int]:
    tier = db.session.get(UsageTier, stripe.world.customer(customer_id).tier_id)
    return tier.key, tier.version


# --- refunds ---------------------------------------------------------------------------------


def test_partial_refunds_take_back_their_share_each_time(stripe: Stripe, stripe_api) -> None:
    session = _bought(stripe, stripe_api)  # 2,000 tokens for 2,000 cents
    assert _refund(stripe, session, 500) == "refunded"
    assert stripe.balance("alice") == 102_000 - 500
    # amount_refunded is cumulative: 1,500 now means 1,000 more.
    assert _refund(stripe, session, 1500) == "refunded"
    assert [e.amount for e in stripe.ledger("alice", "refund")] == [-500, -1000]
    refunded = stripe.events("purchase.refunded")
    assert [(e.data["tokens_taken_back"], e.data["tokens_not_taken_back"]) for e in refunded] == [
        (500, 0),
        (1000, 0),
    ]
    assert refunded[-1].data["purchase"] == session["id"]
    assert refunded[-1].data["token_balance"] == 100_500


def test_a_full_refund_takes_back_every_purchased_token(stripe: Stripe, stripe_api) -> None:
    session = _bought(stripe, stripe_api)
    assert _refund(stripe, session, 2000) == "refunded"
    assert stripe.balance("alice") == 100_000
    entries = stripe.ledger("alice", "refund")
    assert [(e.amount, e.kind) for e in entries] == [(-2000, "refund")]
    assert entries[0].source.startswith("stripe:evt_")


def test_a_refund_seen_again_or_out_of_order_takes_nothing_more(stripe: Stripe, stripe_api) -> None:
    session = _bought(stripe, stripe_api)
    assert _refund(stripe, session, 1500) == "refunded"
    assert _refund(stripe, session, 500) == "refunded"  # an older event arriving late
    assert _refund(stripe, session, 1500) == "refunded"  # the same state sent as a new event
    assert [e.amount for e in stripe.ledger("alice", "refund")] == [-1500]


def test_a_refund_larger_than_a_hard_capped_prepaid_balance_stops_at_0(stripe: Stripe, stripe_api) -> None:
    session = _bought(stripe, stripe_api)  # tier pro: prepaid, hard_cap
    _set_balance(stripe, "alice", 300)
    evt = event("charge.refunded", charge(session["payment_intent"], 2000, 2000))
    assert stripe.deliver(evt) == "refunded"
    assert stripe.balance("alice") == 0
    assert [e.amount for e in stripe.ledger("alice", "refund")] == [-300]
    refunded = stripe.events("purchase.refunded")[-1].data
    assert (refunded["tokens_taken_back"], refunded["tokens_not_taken_back"]) == (300, 1700)
    assert "took back 300; 1,700 could not be taken" in stripe.received(evt["id"]).detail


def test_a_refund_from_a_balance_already_at_0_takes_nothing_and_says_so(stripe: Stripe, stripe_api) -> None:
    session = _bought(stripe, stripe_api)
    _set_balance(stripe, "alice", 0)
    assert _refund(stripe, session, 1000) == "refunded"
    assert stripe.ledger("alice", "refund") == []
    assert stripe.events("purchase.refunded")[-1].data["tokens_not_taken_back"] == 1000


def test_a_postpaid_balance_may_go_below_0(stripe: Stripe, stripe_api) -> None:
    stripe.world.add_tier({"key": "postpaid", "name": "Postpaid", "prepaid": False})
    stripe.world.give_customer("bob", 0)
    from tests.factories import assign

    assign(stripe.world, "bob", _latest(stripe, "postpaid"))
    obj = checkout_session(client_reference_id="bob", amount_total=1000, metadata={"tollgate_tokens": "1000"})
    stripe.world.project.stripe_api_key = None
    stripe.world.commit()
    assert stripe.deliver(event("checkout.session.completed", obj)) == "credited"
    _set_balance(stripe, "bob", 100)
    assert _refund(stripe, obj, 1000) == "refunded"
    assert stripe.balance("bob") == -900


def _latest(stripe: Stripe, key: str) -> UsageTier:
    from app.tiers.operations import latest_version

    return latest_version(db.session, stripe.world.project, key)


def test_a_refund_before_its_purchase_is_kept_and_applied_when_it_arrives(stripe: Stripe, stripe_api) -> None:
    payment_intent = new_id("pi")
    early = event("charge.refunded", charge(payment_intent, 2000, 1000, "ch_early"))
    assert stripe.deliver(early) == "refund_waiting"
    assert stripe.world.customer("alice") is None

    session = checkout_session(client_reference_id="alice", payment_intent=payment_intent, amount_total=2000)
    stripe_api.add_session(session["id"], [(PACK, 2)])
    purchase = event("checkout.session.completed", session)
    assert stripe.deliver(purchase) == "credited"
    assert stripe.balance("alice") == 100_000 + 2000 - 1000
    assert [e.amount for e in stripe.ledger("alice", "refund")] == [-1000]
    assert "a refund that came first" in stripe.received(purchase["id"]).detail
    # The refund's own record now says what it did.
    kept = stripe.received(early["id"])
    assert (kept.outcome, kept.customer_external_id) == ("refunded", "alice")
    assert kept.ledger_entry_id == stripe.ledger("alice", "refund")[0].id


def test_a_refund_arriving_while_its_purchase_is_being_credited_is_applied(
    stripe: Stripe, stripe_api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving that would lose the refund: the purchase has looked for an earlier refund
    (none) and not committed yet when the refund looks for its purchase (not visible yet). The
    purchase pauses right there and lets the refund run; the lock they share makes the refund wait
    for the purchase's commit instead, so the refund finds it. (The pause ends after 2 s at most:
    with the lock, the refund never gets to look while it lasts.)"""
    purchase_paused, refund_looked = threading.Event(), threading.Event()
    apply_waiting, paid_by = refunds.apply_waiting, refunds.paid_by

    def pausing_apply_waiting(ctx, purchase):
        found = apply_waiting(ctx, purchase)
        purchase_paused.set()
        refund_looked.wait(timeout=2)
        return found

    def signalling_paid_by(ctx, payment_intent):
        found = paid_by(ctx, payment_intent)
        refund_looked.set()
        return found

    monkeypatch.setattr(refunds, "apply_waiting", pausing_apply_waiting)
    monkeypatch.setattr(refunds, "paid_by", signalling_paid_by)
    payment_intent = new_id("pi")
    session = checkout_session(client_reference_id="alice", payment_intent=payment_intent, amount_total=2000)
    stripe_api.add_session(session["id"], [(PACK, 2)])
    answers: list = []
    purchase = threading.Thread(
        target=lambda: answers.append(stripe.send(event("checkout.session.completed", session)))
    )
    purchase.start()
    assert purchase_paused.wait(timeout=30)
    refund = event("charge.refunded", charge(payment_intent, 2000, 500))
    answers.append(stripe.send(refund))
    purchase.join()
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert stripe.balance("alice") == 100_000 + 2000 - 500
    assert [e.amount for e in stripe.ledger("alice", "refund")] == [-500]
    assert stripe.received(refund["id"]).outcome == "refunded"


def test_a_charge_without_a_payment_intent_is_ignored(stripe: Stripe) -> None:
    obj = charge("pi_x", 1000, 1000)
    obj["payment_intent"] = None
    assert stripe.deliver(event("charge.refunded", obj)) == "ignored"


# --- subscriptions ----------------------------------------------------------------------------


def _subscribe(stripe: Stripe, stripe_api, customer_id: str = "sam", cus: str = "cus_sam") -> dict:
    obj = checkout_session(
        client_reference_id=customer_id,
        customer=cus,
        mode="subscription",
        subscription="sub_sam",
        amount_total=1500,
    )
    stripe_api.add_session(obj["id"], [(PLUS, 1)])
    evt = event("checkout.session.completed", obj)
    assert stripe.deliver(evt) == "subscribed"
    return evt


def test_a_subscription_session_sets_the_tier_and_links_the_customer_without_tokens(
    stripe: Stripe, stripe_api
) -> None:
    _subscribe(stripe, stripe_api)
    assert _tier(stripe, "sam") == ("plus", 1)
    assert stripe.world.customer("sam").stripe_customer_id == "cus_sam"
    assert stripe.ledger("sam", "purchase") == []


def test_each_paid_invoice_grants_the_periods_tokens_once(stripe: Stripe, stripe_api) -> None:
    _subscribe(stripe, stripe_api)
    first = event("invoice.paid", invoice("cus_sam", [(PLUS, 1)], billing_reason="subscription_create"))
    assert stripe.deliver(first) == "renewed"
    cycle = invoice("cus_sam", [(PLUS, 1)], billing_reason="subscription_cycle")
    assert stripe.deliver(event("invoice.paid", cycle)) == "renewed"
    # The same invoice in another event (Stripe resends; an operator replays) grants nothing more.
    assert stripe.deliver(event("invoice.paid", cycle)) == "already_fulfilled"
    assert [e.amount for e in stripe.ledger("sam", "purchase")] == [20_000, 20_000]
    assert stripe.balance("sam") == 100_000 + 40_000
    renewed = stripe.events("subscription.renewed")
    assert [(e.customer_external_id, e.data["tokens"], e.data["subscription"]) for e in renewed] == [
        ("sam", 20_000, "sub_test_1"),
        ("sam", 20_000, "sub_test_1"),
    ]
    assert renewed[0].data["tier"] == {"key": "plus", "version": 1}
    assert _tier(stripe, "sam") == ("plus", 1)


def test_an_invoice_keeps_the_customers_version_of_the_mapped_tier(stripe: Stripe, stripe_api) -> None:
    _subscribe(stripe, stripe_api)
    from app.tiers.operations import clone_tier

    clone_tier(db.session, _latest(stripe, "plus"))  # plus v2 appears; sam stays on v1
    stripe.world.commit()
    assert stripe.deliver(event("invoice.paid", invoice("cus_sam", [(PLUS, 1)]))) == "renewed"
    assert _tier(stripe, "sam") == ("plus", 1)


@pytest.mark.parametrize("reason", ["subscription_update", "manual", "subscription_threshold"])
def test_other_billing_reasons_grant_nothing(stripe: Stripe, stripe_api, reason: str) -> None:
    _subscribe(stripe, stripe_api)
    assert (
        stripe.deliver(event("invoice.paid", invoice("cus_sam", [(PLUS, 1)], billing_reason=reason)))
        == "ignored"
    )
    assert stripe.ledger("sam", "purchase") == []


def test_an_invoice_before_its_session_is_granted_when_the_session_links_the_customer(
    stripe: Stripe, stripe_api
) -> None:
    early = event("invoice.paid", invoice("cus_sam", [(PLUS, 1)], billing_reason="subscription_create"))
    assert stripe.deliver(early) == "invoice_waiting"
    assert stripe.world.customer("sam") is None
    _subscribe(stripe, stripe_api)
    assert [e.amount for e in stripe.ledger("sam", "purchase")] == [20_000]
    kept = stripe.received(early["id"])
    assert (kept.outcome, kept.customer_external_id) == ("renewed", "sam")
    assert stripe.ledger("sam", "purchase")[0].source == f"stripe:{early['id']}"


def test_an_invoice_naming_its_customer_in_the_subscription_metadata_creates_it(stripe: Stripe) -> None:
    paid = invoice("cus_meta", [(PLUS, 1)], metadata={"tollgate_customer_id": "meta-sub"})
    assert stripe.deliver(event("invoice.paid", paid)) == "renewed"
    assert stripe.balance("meta-sub") == 120_000
    assert _tier(stripe, "meta-sub") == ("plus", 1)


def test_a_deleted_subscription_moves_the_customer_to_the_default_tier(stripe: Stripe, stripe_api) -> None:
    _subscribe(stripe, stripe_api)
    subscription = {"id": "sub_sam", "object": "subscription", "customer": "cus_sam", "status": "canceled"}
    evt = event("customer.subscription.deleted", subscription)
    assert stripe.deliver(evt) == "cancelled"
    default = db.session.get(UsageTier, stripe.world.project.default_tier_id)
    assert _tier(stripe, "sam") == (default.key, default.version)
    cancelled = stripe.events("subscription.cancelled")
    assert [(e.customer_external_id, e.data["from"], e.data["to"]) for e in cancelled] == [
        ("sam", {"key": "plus", "version": 1}, {"key": default.key, "version": default.version})
    ]


def test_a_deleted_subscription_of_nobody_known_yet_is_kept_for_its_session(stripe: Stripe) -> None:
    subscription = {"id": "sub_x", "object": "subscription", "customer": "cus_unknown"}
    evt = event("customer.subscription.deleted", subscription)
    assert stripe.deliver(evt) == "cancelled"
    assert "no customer is linked to sub_x yet" in stripe.received(evt["id"]).detail
    assert stripe.events("subscription.cancelled") == []


def test_an_invoice_arriving_while_its_session_links_the_customer_is_granted(
    stripe: Stripe, stripe_api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving that would strand the invoice: the session has linked the Stripe customer
    and looked for waiting invoices (none), uncommitted, when the invoice looks for the customer
    (not linked yet, as far as it can see) and decides to wait. The session pauses right there;
    the lock they share makes the invoice wait for the session's commit instead, so it finds the
    customer. (The pause ends after 2 s at most: with the lock, the invoice never gets that far.)"""
    session_paused, invoice_claimed = threading.Event(), threading.Event()
    grant_waiting, claim = subscriptions._grant_waiting_invoices, grants.claim

    def pausing_grant_waiting(ctx, customer, stripe_customer):
        granted = grant_waiting(ctx, customer, stripe_customer)
        session_paused.set()
        invoice_claimed.wait(timeout=2)
        return granted

    def signalling_claim(ctx, kind, stripe_customer, **fields):
        claimed = claim(ctx, kind, stripe_customer, **fields)
        if kind == "invoice":
            invoice_claimed.set()
        return claimed

    monkeypatch.setattr(subscriptions, "_grant_waiting_invoices", pausing_grant_waiting)
    monkeypatch.setattr(grants, "claim", signalling_claim)
    obj = checkout_session(
        client_reference_id="sam", customer="cus_sam", mode="subscription", subscription="sub_sam"
    )
    stripe_api.add_session(obj["id"], [(PLUS, 1)])
    answers: list = []
    session = threading.Thread(
        target=lambda: answers.append(stripe.send(event("checkout.session.completed", obj)))
    )
    session.start()
    assert session_paused.wait(timeout=30)
    paid = event("invoice.paid", invoice("cus_sam", [(PLUS, 1)], billing_reason="subscription_create"))
    answers.append(stripe.send(paid))
    session.join()
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert stripe.received(paid["id"]).outcome == "renewed"
    assert [e.amount for e in stripe.ledger("sam", "purchase")] == [20_000]


def test_what_a_capped_balance_could_not_give_back_is_asked_again_by_the_next_refund(
    stripe: Stripe, stripe_api
) -> None:
    """SPEC 7.5: the share due, minus what earlier refunds of the charge took."""
    session = _bought(stripe, stripe_api)  # 2,000 tokens
    _set_balance(stripe, "alice", 300)
    assert _refund(stripe, session, 1000) == "refunded"  # half: 1,000 due, 300 there
    assert stripe.balance("alice") == 0
    _set_balance(stripe, "alice", 5000)
    assert _refund(stripe, session, 2000) == "refunded"  # all of it: 2,000 due, 300 taken so far
    assert [e.amount for e in stripe.ledger("alice", "refund")] == [-300, -1700]
    assert stripe.balance("alice") == 3300
    taken = [
        (e.data["tokens_taken_back"], e.data["tokens_not_taken_back"])
        for e in stripe.events("purchase.refunded")
    ]
    assert taken == [(300, 700), (1700, 0)]


def test_a_subscription_invoices_refund_finds_it_through_stripes_api(stripe: Stripe, stripe_api) -> None:
    """Current API versions carry an invoice's payment intent only in its `payments`, which
    webhooks leave out unless asked: Tollgate asks Stripe's API, and a refund then finds it."""
    _subscribe(stripe, stripe_api)
    paid = invoice("cus_sam", [(PLUS, 1)], billing_reason="subscription_create")
    del paid["payments"]
    stripe_api.add_invoice_payment(paid["id"], "pi_of_the_invoice")
    assert stripe.deliver(event("invoice.paid", paid)) == "renewed"
    asked = [r for r in stripe_api.requests if r["path"] == "/v1/invoice_payments"]
    assert [r["query"]["invoice"] for r in asked] == [[paid["id"]]]
    refund = event("charge.refunded", charge("pi_of_the_invoice", 1500, 1500))
    assert stripe.deliver(refund) == "refunded"
    assert [e.amount for e in stripe.ledger("sam", "refund")] == [-20_000]


def test_renewals_go_to_the_subscriber_never_to_a_customer_with_the_same_email(
    stripe: Stripe, stripe_api
) -> None:
    stripe.world.give_customer("old", 0, email="buyer@example.com")
    stripe.world.give_customer("sam", 0, email="buyer@example.com")
    early = event(
        "invoice.paid",
        invoice("cus_sam", [(PLUS, 1)], billing_reason="subscription_create", email="buyer@example.com"),
    )
    assert stripe.deliver(early) == "invoice_waiting"
    _subscribe(stripe, stripe_api)  # client_reference_id sam, email buyer@example.com
    assert stripe.deliver(event("invoice.paid", invoice("cus_sam", [(PLUS, 1)]))) == "renewed"
    assert [e.amount for e in stripe.ledger("sam", "purchase")] == [20_000, 20_000]
    assert stripe.balance("old") == 0
    assert stripe.world.customer("old").stripe_customer_id is None


def test_a_stripe_customer_belongs_to_the_customer_of_its_latest_purchase(stripe: Stripe, stripe_api) -> None:
    first = checkout_session(client_reference_id="ann", customer="cus_shared", email=None)
    stripe_api.add_session(first["id"], [(PACK, 1)])
    assert stripe.deliver(event("checkout.session.completed", first)) == "credited"
    stripe.world.give_customer("ben", 100_000)
    _subscribe(stripe, stripe_api, customer_id="ben", cus="cus_shared")
    assert stripe.world.customer("ann").stripe_customer_id is None
    assert stripe.world.customer("ben").stripe_customer_id == "cus_shared"
    assert (
        stripe.deliver(event("invoice.paid", invoice("cus_shared", [(PLUS, 1)], subscription="sub_other")))
        == "renewed"
    )
    assert stripe.balance("ben") == 120_000
    assert stripe.balance("ann") == 101_000


def test_an_invoice_after_its_subscription_was_deleted_grants_tokens_but_not_the_tier(
    stripe: Stripe, stripe_api
) -> None:
    _subscribe(stripe, stripe_api)
    deleted = {"id": "sub_sam", "object": "subscription", "customer": "cus_sam", "status": "canceled"}
    assert stripe.deliver(event("customer.subscription.deleted", deleted)) == "cancelled"
    late = event("invoice.paid", invoice("cus_sam", [(PLUS, 1)], subscription="sub_sam"))
    assert stripe.deliver(late) == "renewed"
    default = db.session.get(UsageTier, stripe.world.project.default_tier_id)
    assert _tier(stripe, "sam") == (default.key, default.version)
    assert "sub_sam is cancelled: the tier stays" in stripe.received(late["id"]).detail
    assert stripe.deliver(event("customer.subscription.deleted", deleted)) == "already_fulfilled"


def test_deleting_an_older_subscription_leaves_the_current_one_alone(stripe: Stripe, stripe_api) -> None:
    _subscribe(stripe, stripe_api)  # sub_sam, tier plus
    newer = checkout_session(
        client_reference_id="sam", customer="cus_sam", mode="subscription", subscription="sub_newer"
    )
    stripe_api.add_session(newer["id"], [(PACK, 1)])  # tier pro
    assert stripe.deliver(event("checkout.session.completed", newer)) == "subscribed"
    old = {"id": "sub_sam", "object": "subscription", "customer": "cus_sam"}
    evt = event("customer.subscription.deleted", old)
    assert stripe.deliver(evt) == "ignored"
    assert "sub_newer is" in stripe.received(evt["id"]).detail
    assert _tier(stripe, "sam") == ("pro", 1)


def test_a_late_older_refund_of_a_charge_takes_what_is_still_due(stripe: Stripe, stripe_api) -> None:
    session = _bought(stripe, stripe_api)  # 2,000 tokens
    _set_balance(stripe, "alice", 300)
    assert _refund(stripe, session, 2000) == "refunded"  # the full refund first: 300 there
    _set_balance(stripe, "alice", 5000)
    assert _refund(stripe, session, 1000) == "refunded"  # the older half refund, late
    assert [e.amount for e in stripe.ledger("alice", "refund")] == [-300, -1700]


def test_a_refund_leaves_the_tokens_held_by_calls_in_flight(stripe: Stripe, stripe_api) -> None:
    session = _bought(stripe, stripe_api)
    _set_balance(stripe, "alice", 1000)
    customer = stripe.world.customer("alice")
    customer.reserved_tokens = 400  # a call in flight holds 400 of them
    stripe.world.commit()
    assert _refund(stripe, session, 2000) == "refunded"
    assert [e.amount for e in stripe.ledger("alice", "refund")] == [-600]
    customer = stripe.world.customer("alice")
    assert (customer.token_balance, customer.reserved_tokens) == (400, 400)
    customer.reserved_tokens = 0  # the call settles (or its hold expires)
    stripe.world.commit()


def test_an_invoice_is_renewed_even_when_stripe_will_not_say_what_paid_it(stripe: Stripe, stripe_api) -> None:
    """A key allowed to read Checkout Sessions only: the invoice's payment is refused (403), and
    only refunds needed it."""
    _subscribe(stripe, stripe_api)
    paid = invoice("cus_sam", [(PLUS, 1)], billing_reason="subscription_create")
    del paid["payments"]
    stripe_api.fail_status = 403
    evt = event("invoice.paid", paid)
    assert stripe.deliver(evt) == "renewed"
    assert stripe.balance("sam") == 120_000
    assert "what paid it is not known (Stripe's API answered HTTP 403" in stripe.received(evt["id"]).detail


def test_a_deletion_before_its_session_leaves_the_customer_without_the_paid_tier(
    stripe: Stripe, stripe_api
) -> None:
    deleted = {"id": "sub_sam", "object": "subscription", "customer": "cus_sam", "status": "canceled"}
    assert stripe.deliver(event("customer.subscription.deleted", deleted)) == "cancelled"
    obj = checkout_session(
        client_reference_id="sam", customer="cus_sam", mode="subscription", subscription="sub_sam"
    )
    stripe_api.add_session(obj["id"], [(PLUS, 1)])
    evt = event("checkout.session.completed", obj)
    assert stripe.deliver(evt) == "subscribed"
    assert "cancelled before this session arrived" in stripe.received(evt["id"]).detail
    assert _tier(stripe, "sam") != ("plus", 1)
    assert stripe.world.customer("sam").stripe_customer_id == "cus_sam"


def test_the_longest_event_id_taken_fits_every_column_it_reaches(stripe: Stripe, stripe_api) -> None:
    """180 characters: as a ledger source and idempotency key ("stripe:refund:" + id) too."""
    session = _bought(stripe, stripe_api)
    refund = event(
        "charge.refunded", charge(session["payment_intent"], 2000, 2000), event_id="evt_" + "r" * 176
    )
    assert stripe.deliver(refund) == "refunded"
    assert stripe.ledger("alice", "refund")[0].source == "stripe:evt_" + "r" * 176
