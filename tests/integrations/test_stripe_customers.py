"""Who a Stripe purchase is for (SPEC 7.5; issue 12 acceptance 3): each rule in order, each
applying only when it names an existing customer, else a new customer with the right id."""

from __future__ import annotations

from sqlalchemy import select

from app.customers.operations import awaiting_approval
from app.extensions import db
from app.models import Customer, Event
from tests.integrations.conftest import PACK, Stripe, checkout_session, event


def _buy(stripe: Stripe, stripe_api, **session) -> str:
    obj = checkout_session(**session)
    stripe_api.add_session(obj["id"], [(PACK, 1)])
    return stripe.deliver(event("checkout.session.completed", obj))


def _purchased(stripe: Stripe) -> list[str]:
    return [e.customer_external_id for e in stripe.events("purchase.completed")]


def test_metadata_customer_id_comes_first(stripe: Stripe, stripe_api) -> None:
    for name in ("meta", "ref", "linked", "mailed"):
        stripe.world.give_customer(name, 0)
    stripe.world.give_customer("linked", 0, stripe_customer_id="cus_linked")
    stripe.world.give_customer("mailed", 0, email="buyer@example.com")
    assert (
        _buy(
            stripe,
            stripe_api,
            metadata={"tollgate_customer_id": "meta"},
            client_reference_id="ref",
            customer="cus_linked",
            email="buyer@example.com",
        )
        == "credited"
    )
    assert _purchased(stripe) == ["meta"]
    assert stripe.balance("meta") == 1000
    assert stripe.balance("ref") == 0


def test_client_reference_id_when_the_metadata_names_no_customer(stripe: Stripe, stripe_api) -> None:
    for name in ("ref", "linked"):
        stripe.world.give_customer(name, 0)
    stripe.world.give_customer("linked", 0, stripe_customer_id="cus_linked")
    _buy(
        stripe,
        stripe_api,
        metadata={"tollgate_customer_id": "nobody-yet"},
        client_reference_id="ref",
        customer="cus_linked",
    )
    assert _purchased(stripe) == ["ref"]
    assert stripe.world.customer("nobody-yet") is None


def test_the_customer_linked_to_the_stripe_customer(stripe: Stripe, stripe_api) -> None:
    stripe.world.give_customer("linked", 0, stripe_customer_id="cus_linked")
    stripe.world.give_customer("mailed", 0, email="buyer@example.com")
    _buy(
        stripe,
        stripe_api,
        client_reference_id="unknown-ref",
        customer="cus_linked",
        email="buyer@example.com",
    )
    assert _purchased(stripe) == ["linked"]
    assert stripe.world.customer("unknown-ref") is None


def test_the_customer_with_the_same_email_whatever_its_case(stripe: Stripe, stripe_api) -> None:
    stripe.world.give_customer("mailed", 0, email="Buyer@Example.COM")
    stripe.world.give_customer("later", 0, email="buyer@example.com")
    _buy(stripe, stripe_api, customer="cus_new", email="BUYER@example.com")
    assert _purchased(stripe) == ["mailed"]  # the oldest of the two
    # The purchase links the session's Stripe customer to the customer it credited.
    assert stripe.world.customer("mailed").stripe_customer_id == "cus_new"
    _buy(stripe, stripe_api, customer="cus_new", email="someone-else@example.com")
    assert _purchased(stripe) == ["mailed", "mailed"]


def test_a_new_customer_takes_the_metadata_id_first(stripe: Stripe, stripe_api) -> None:
    _buy(
        stripe,
        stripe_api,
        metadata={"tollgate_customer_id": "meta-new"},
        client_reference_id="ref-new",
        customer="cus_new",
        email="new@example.com",
        name="New Buyer",
    )
    created = stripe.world.customer("meta-new")
    assert created is not None
    assert (created.name, created.email, created.stripe_customer_id) == (
        "New Buyer",
        "new@example.com",
        "cus_new",
    )
    assert stripe.world.customer("ref-new") is None
    # With the project's defaults: its initial grant first, then the purchase.
    assert [(e.kind, e.amount) for e in stripe.ledger("meta-new")] == [
        ("initial_grant", 100_000),
        ("purchase", 1000),
    ]
    assert [e.customer_external_id for e in stripe.events("customer.created")] == ["meta-new"]


def test_a_new_customer_takes_the_client_reference_id_next(stripe: Stripe, stripe_api) -> None:
    _buy(stripe, stripe_api, client_reference_id="ref-new", customer="cus_new")
    assert stripe.world.customer("ref-new").stripe_customer_id == "cus_new"
    assert stripe.world.customer("cus_new") is None


def test_a_new_customer_takes_the_stripe_customer_id_last(stripe: Stripe, stripe_api) -> None:
    _buy(stripe, stripe_api, customer="cus_only", email=None)
    assert stripe.balance("cus_only") == 101_000


def test_a_purchase_naming_nobody_is_kept_for_review(stripe: Stripe, stripe_api) -> None:
    stripe.world.give_customer("someone", 0, email="someone@example.com")
    obj = checkout_session(email="stranger@example.com")
    stripe_api.add_session(obj["id"], [(PACK, 1)])
    evt = event("checkout.session.completed", obj)
    assert stripe.deliver(evt) == "needs_review"
    assert "client_reference_id" in stripe.received(evt["id"]).detail
    db.session.expire_all()
    assert db.session.query(Event).filter(Event.type == "purchase.completed").count() == 0
    assert stripe.balance("someone") == 0


def test_a_purchase_by_a_new_customer_with_no_initial_tokens_leaves_the_approval_queue(
    stripe: Stripe, stripe_api
) -> None:
    stripe.world.set(new_customer_initial_tokens=0)
    _buy(stripe, stripe_api, client_reference_id="fresh")
    assert stripe.balance("fresh") == 1000
    assert [e.customer_external_id for e in stripe.events("customer.awaiting_approval")] == ["fresh"]
    waiting = db.session.scalars(select(Customer.external_id).where(awaiting_approval())).all()
    assert waiting == []
