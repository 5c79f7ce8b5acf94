"""Stripe's webhook: signatures, one credit per event and per session, what a checkout buys
(SPEC 7.5; issue 12 acceptance 1 and 2)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import stripe as stripe_lib
from sqlalchemy import func, select

from app.crypto import seal
from app.extensions import db
from app.keys.operations import create_key
from app.models import Customer, Event, LedgerEntry, UsageTier
from app.models.purchase import InboundWebhook, Purchase
from app.projects.operations import create_project
from tests.integrations.conftest import PACK, SECRET, TOPUP, Stripe, checkout_session, event, sign


def _nothing_written() -> None:
    db.session.expire_all()
    for model in (InboundWebhook, Purchase, Customer, LedgerEntry, Event):
        assert db.session.scalar(select(func.count()).select_from(model)) == 0, model.__name__


def _paid(stripe_api, lines, **session) -> dict:
    obj = checkout_session(**session)
    stripe_api.add_session(obj["id"], lines)
    return obj


# --- acceptance 1: the signature is checked before anything else --------------------------


def test_our_signature_is_stripes_own(stripe: Stripe) -> None:
    body = json.dumps(event("ping", {"id": "x"}))
    t = int(time.time())
    assert sign(body, SECRET, t) == stripe_lib.WebhookSignature.generate_signature_header(body, SECRET, t)


@pytest.mark.parametrize(
    "case", ["tampered body", "missing header", "stale by 301 s", "another project's secret", "not hex"]
)
def test_a_bad_signature_is_400_and_writes_nothing(stripe: Stripe, stripe_api, case: str) -> None:
    other = create_project(db.session, "other", "Other")
    db.session.flush()
    other.stripe_webhook_secret = seal(stripe.world.secret_key, "whsec_the_other_projects_secret")
    stripe.world.commit()
    evt = event("checkout.session.completed", _paid(stripe_api, [(PACK, 2)], client_reference_id="alice"))
    body = json.dumps(evt)
    signature = {
        "tampered body": sign(body),
        "missing header": None,
        "stale by 301 s": sign(body, timestamp=int(time.time()) - 301),
        "another project's secret": sign(body, "whsec_the_other_projects_secret"),
        "not hex": f"t={int(time.time())},v1=zz",
    }[case]
    if case == "tampered body":
        body = body.replace('"amount_total": 2000', '"amount_total": 1')
    answer = stripe.post(body, signature)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"
    mismatch = "Stripe-Signature does not verify: no signature matches this project's secret"
    assert answer.json()["error"]["message"] == {
        "missing header": "no Stripe-Signature header: only Stripe's signed events are taken",
        "stale by 301 s": "Stripe-Signature does not verify: it is more than 300 s old",
    }.get(case, mismatch)
    _nothing_written()
    assert stripe_api.requests == []  # not even Stripe's API was asked


def test_a_project_without_a_secret_refuses_every_event(stripe: Stripe, stripe_api) -> None:
    stripe.world.project.stripe_webhook_secret = None
    stripe.world.commit()
    answer = stripe.send(event("checkout.session.completed", _paid(stripe_api, [(PACK, 1)])))
    assert answer.status_code == 400
    assert "no Stripe webhook secret" in answer.json()["error"]["message"]
    _nothing_written()


def test_a_signature_beside_a_stale_one_verifies(stripe: Stripe, stripe_api) -> None:
    """While a secret is being rolled, Stripe signs with both: any matching v1 is enough."""
    evt = event("checkout.session.completed", _paid(stripe_api, [(PACK, 1)], client_reference_id="alice"))
    body = json.dumps(evt)
    good = sign(body)
    t, v1 = good.split(",")
    answer = stripe.post(body, f"{t},v1={'0' * 64},{v1}")
    assert answer.status_code == 200
    assert stripe.received(evt["id"]).outcome == "credited"


def test_an_unknown_project_is_404_not_found(stripe: Stripe) -> None:
    body = json.dumps(event("checkout.session.completed", checkout_session()))
    answer = requests.post(
        f"{stripe.world.url}/integrations/stripe/no-such-project/webhook",
        data=body,
        headers={"Stripe-Signature": sign(body)},
        timeout=10,
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    _nothing_written()


def test_a_signed_body_that_is_no_event_is_400(stripe: Stripe) -> None:
    too_long = json.dumps(event("x", {"id": "o"}, event_id="evt_" + "x" * 190))
    for body in (
        '{"id": "evt_1"}',
        "[1, 2]",
        '{"id": "evt_1", "type": "x", "data": {"object": []}}',
        too_long,
    ):
        answer = stripe.post(body, sign(body))
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] == "invalid_request"
    _nothing_written()


# --- acceptance 2: one credit ---------------------------------------------------------------


def test_a_paid_session_for_two_packs_credits_2000_tokens_and_sets_the_tier(
    stripe: Stripe, stripe_api
) -> None:
    session = _paid(stripe_api, [(PACK, 2)], client_reference_id="alice")
    evt = event("checkout.session.completed", session)
    answer = stripe.send(evt)
    assert answer.status_code == 200
    assert answer.json() == {"received": True, "outcome": "credited"}

    assert stripe.balance("alice") == 100_000 + 2_000
    purchases = stripe.ledger("alice", "purchase")
    assert [(e.amount, e.source) for e in purchases] == [(2000, f"stripe:{evt['id']}")]
    customer = stripe.world.customer("alice")
    tier = db.session.get(UsageTier, customer.tier_id)
    assert (tier.key, tier.version) == ("pro", 1)
    completed = stripe.events("purchase.completed")
    assert len(completed) == 1
    assert completed[0].customer_external_id == "alice"
    assert completed[0].data["tokens"] == 2000
    assert completed[0].data["tier"] == {"key": "pro", "version": 1}
    assert completed[0].data["purchase"] == session["id"]
    assert completed[0].data["token_balance"] == 102_000
    row = stripe.received(evt["id"])
    assert row.ledger_entry_id == purchases[0].id
    assert row.customer_external_id == "alice"
    # The line items came from Stripe's API, with the project's key, expanded.
    asked = [r for r in stripe_api.requests if r["path"] == f"/v1/checkout/sessions/{session['id']}"]
    assert len(asked) == 1
    assert asked[0]["query"]["expand[0]"] == ["line_items"]
    assert asked[0]["authorization"] == "Bearer sk_test_tollgate_0123456789"


def test_lines_past_the_first_page_count_too(stripe: Stripe, stripe_api) -> None:
    session = _paid(stripe_api, [(TOPUP, 1)] * 12 + [("price_unmapped", 5)], client_reference_id="alice")
    assert stripe.deliver(event("checkout.session.completed", session)) == "credited"
    assert [e.amount for e in stripe.ledger("alice", "purchase")] == [12 * 500]


def test_the_same_event_three_times_credits_once(stripe: Stripe, stripe_api) -> None:
    evt = event("checkout.session.completed", _paid(stripe_api, [(PACK, 2)], client_reference_id="alice"))
    outcomes = [stripe.send(evt).json()["outcome"] for _ in range(3)]
    assert outcomes == ["credited", "duplicate", "duplicate"]
    assert [e.amount for e in stripe.ledger("alice", "purchase")] == [2000]
    assert len(stripe.events("purchase.completed")) == 1


def test_the_same_event_from_five_threads_at_once_credits_once(stripe: Stripe, stripe_api) -> None:
    evt = event("checkout.session.completed", _paid(stripe_api, [(PACK, 2)], client_reference_id="alice"))
    start = threading.Barrier(5)
    answers: list = []

    def send() -> None:
        start.wait()
        answers.append(stripe.send(evt))

    threads = [threading.Thread(target=send) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200] * 5
    assert sorted(a.json()["outcome"] for a in answers) == ["credited"] + ["duplicate"] * 4
    assert [e.amount for e in stripe.ledger("alice", "purchase")] == [2000]
    assert stripe.balance("alice") == 102_000
    assert len(stripe.events("purchase.completed")) == 1


def test_completed_and_async_succeeded_of_one_session_credit_once(stripe: Stripe, stripe_api) -> None:
    session = _paid(stripe_api, [(PACK, 2)], client_reference_id="alice")
    assert stripe.deliver(event("checkout.session.completed", session)) == "credited"
    later = event("checkout.session.async_payment_succeeded", session)
    assert stripe.deliver(later) == "already_fulfilled"
    assert stripe.balance("alice") == 102_000
    assert len(stripe.ledger("alice", "purchase")) == 1


def test_completed_and_async_succeeded_at_once_credit_once(stripe: Stripe, stripe_api) -> None:
    session = _paid(stripe_api, [(PACK, 2)], client_reference_id="alice")
    events = [
        event(t, session) for t in ("checkout.session.completed", "checkout.session.async_payment_succeeded")
    ]
    start = threading.Barrier(len(events))
    answers: list = []

    def send(evt: dict) -> None:
        start.wait()
        answers.append(stripe.send(evt))

    threads = [threading.Thread(target=send, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.json()["outcome"] for a in answers) == ["already_fulfilled", "credited"]
    assert [e.amount for e in stripe.ledger("alice", "purchase")] == [2000]


def test_an_unpaid_session_waits_for_its_async_success(stripe: Stripe, stripe_api) -> None:
    session = _paid(stripe_api, [(PACK, 1)], client_reference_id="alice", payment_status="unpaid")
    assert stripe.deliver(event("checkout.session.completed", session)) == "awaiting_payment"
    assert stripe.world.customer("alice") is None
    assert stripe_api.requests == []
    paid = dict(session, payment_status="paid")
    assert stripe.deliver(event("checkout.session.async_payment_succeeded", paid)) == "credited"
    assert stripe.balance("alice") == 101_000


def test_a_failed_async_payment_is_recorded_only(stripe: Stripe, stripe_api) -> None:
    session = _paid(stripe_api, [(PACK, 1)], client_reference_id="alice", payment_status="unpaid")
    assert stripe.deliver(event("checkout.session.async_payment_failed", session)) == "payment_failed"
    assert stripe.world.customer("alice") is None
    assert db.session.scalar(select(func.count()).select_from(Purchase)) == 0


def test_without_a_mapped_price_the_metadata_says_what_was_bought(stripe: Stripe, stripe_api) -> None:
    session = _paid(
        stripe_api,
        [("price_not_in_the_map", 1)],
        client_reference_id="alice",
        metadata={"tollgate_tokens": "3000", "tollgate_tier": "plus"},
    )
    evt = event("checkout.session.completed", session)
    assert stripe.deliver(evt) == "credited"
    assert [e.amount for e in stripe.ledger("alice", "purchase")] == [3000]
    assert "the metadata" in stripe.received(evt["id"]).detail
    assert stripe.events("purchase.completed")[0].data["tier"] == {"key": "plus", "version": 1}


def test_without_an_api_key_only_the_metadata_counts(stripe: Stripe, stripe_api) -> None:
    stripe.world.project.stripe_api_key = None
    stripe.world.commit()
    session = _paid(stripe_api, [(PACK, 2)], client_reference_id="alice", metadata={"tollgate_tokens": "750"})
    assert stripe.deliver(event("checkout.session.completed", session)) == "credited"
    assert [e.amount for e in stripe.ledger("alice", "purchase")] == [750]
    assert stripe_api.requests == []


def test_nothing_to_grant_is_kept_for_review_and_answered_200(stripe: Stripe, stripe_api) -> None:
    session = _paid(stripe_api, [("price_not_in_the_map", 1)], client_reference_id="alice")
    evt = event("checkout.session.completed", session)
    assert stripe.deliver(evt) == "needs_review"
    assert "nothing to grant" in stripe.received(evt["id"]).detail
    assert stripe.world.customer("alice") is None
    for bad in ("lots", "-5", "1e6", "9" * 5000):
        session = _paid(stripe_api, [], client_reference_id="alice", metadata={"tollgate_tokens": bad})
        assert stripe.deliver(event("checkout.session.completed", session)) == "needs_review"
    assert stripe.world.customer("alice") is None


def test_a_tier_no_key_could_name_grants_nothing(stripe: Stripe, stripe_api) -> None:
    session = _paid(
        stripe_api,
        [],
        client_reference_id="alice",
        metadata={"tollgate_tokens": "5", "tollgate_tier": "t" * 65},
    )
    evt = event("checkout.session.completed", session)
    assert stripe.deliver(evt) == "needs_review"
    assert "is not a tier key" in stripe.received(evt["id"]).detail
    assert stripe.world.customer("alice") is None


def test_an_unknown_tier_still_credits_the_tokens_and_asks_for_review(stripe: Stripe, stripe_api) -> None:
    session = _paid(
        stripe_api,
        [],
        client_reference_id="alice",
        metadata={"tollgate_tokens": "100", "tollgate_tier": "gold"},
    )
    evt = event("checkout.session.completed", session)
    assert stripe.deliver(evt) == "needs_review"
    assert stripe.balance("alice") == 100_100
    assert "no tier 'gold'" in stripe.received(evt["id"]).detail


def test_when_stripes_api_fails_the_event_is_shown_and_its_retry_credits(stripe: Stripe, stripe_api) -> None:
    evt = event("checkout.session.completed", _paid(stripe_api, [(PACK, 2)], client_reference_id="alice"))
    stripe_api.fail_status = 500
    answer = stripe.send(evt)
    assert answer.status_code == 503  # Stripe sends it again
    assert answer.json()["error"]["code"] == "stripe_unavailable"
    assert "HTTP 500" in answer.json()["error"]["message"]
    row = stripe.received(evt["id"])
    assert row.outcome == "api_error" and "Stripe will send the event again" in row.detail
    assert stripe.world.customer("alice") is None
    assert db.session.scalar(select(func.count()).select_from(Purchase)) == 0
    stripe_api.fail_status = None
    assert stripe.deliver(evt) == "credited"  # the retry takes the row over
    assert stripe.balance("alice") == 102_000
    assert stripe.send(evt).json()["outcome"] == "duplicate"


def test_a_session_stripes_api_does_not_know_is_shown_until_the_key_is_put_right(
    stripe: Stripe, stripe_api
) -> None:
    """A key of another account or mode: 404 from Stripe. Stripe keeps resending the event; once
    the admin saves the right key, the next delivery credits."""
    session = checkout_session(client_reference_id="alice")
    evt = event("checkout.session.completed", session)
    answer = stripe.send(evt)
    assert answer.status_code == 503
    assert "HTTP 404" in stripe.received(evt["id"]).detail
    assert "127.0.0.1" not in answer.text  # the answer names no address of this network
    stripe_api.add_session(session["id"], [(PACK, 1)])
    assert stripe.deliver(evt) == "credited"


def test_a_paid_looking_status_only_fulfils_when_it_is_paid_or_free(stripe: Stripe, stripe_api) -> None:
    free = _paid(stripe_api, [(PACK, 1)], client_reference_id="alice", payment_status="no_payment_required")
    assert stripe.deliver(event("checkout.session.completed", free)) == "credited"
    odd = _paid(stripe_api, [(PACK, 1)], client_reference_id="bob", payment_status="processing")
    assert stripe.deliver(event("checkout.session.completed", odd)) == "ignored"
    assert stripe.world.customer("bob") is None


@pytest.mark.parametrize(
    "type",
    ["customer.created", "payment_intent.succeeded", "checkout.session.expired", "invoice.payment_failed"],
)
def test_other_types_are_answered_200_and_recorded_as_ignored(stripe: Stripe, type: str) -> None:
    evt = event(type, {"id": "obj_1", "object": type.split(".")[0]})
    assert stripe.deliver(evt) == "ignored"
    assert db.session.scalar(select(func.count()).select_from(Customer)) == 0


def test_a_connected_accounts_event_is_ignored_without_asking_stripe(stripe: Stripe, stripe_api) -> None:
    session = checkout_session(client_reference_id="alice")  # the platform's key would not find it
    evt = event("checkout.session.completed", session, account="acct_someone_else")
    assert stripe.deliver(evt) == "ignored"
    assert stripe.world.customer("alice") is None
    assert stripe_api.requests == []


# --- acceptance 4 (the record): GET /api/stripe/events ------------------------------------


def test_every_received_event_is_listed_by_the_api_with_what_it_did(stripe: Stripe, stripe_api) -> None:
    _, admin = create_key(db.session, stripe.world.project, "ops", "admin")
    stripe.world.commit()
    bought = event("checkout.session.completed", _paid(stripe_api, [(PACK, 2)], client_reference_id="alice"))
    ignored = event("customer.created", {"id": "cus_1", "object": "customer"})
    for evt in (bought, ignored):
        stripe.deliver(evt)

    def get(query: str = "", key: str = admin) -> requests.Response:
        return requests.get(
            f"{stripe.world.url}/api/stripe/events{query}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )

    listed = get().json()
    assert [e["id"] for e in listed["data"]] == [ignored["id"], bought["id"]]
    assert listed["next_cursor"] is None
    first = listed["data"][1]
    entry = stripe.ledger("alice", "purchase")[0]
    assert first == {
        "id": bought["id"],
        "type": "checkout.session.completed",
        "received_at": first["received_at"],
        "livemode": False,
        "outcome": "credited",
        "detail": "credited 2,000 tokens from the price map; tier pro v1",
        "object_id": bought["data"]["object"]["id"],
        "customer_id": "alice",
        "ledger_entry": {
            "id": entry.id,
            "kind": "purchase",
            "amount": 2000,
            "balance_after": 102_000,
            "source": f"stripe:{bought['id']}",
            "reason": f"Stripe checkout {bought['data']['object']['id']}",
            "created_at": first["ledger_entry"]["created_at"],
        },
    }
    assert listed["data"][0]["ledger_entry"] is None
    assert [e["id"] for e in get("?outcome=ignored").json()["data"]] == [ignored["id"]]
    assert [e["id"] for e in get("?type=checkout.session.completed").json()["data"]] == [bought["id"]]
    page = get("?limit=1").json()
    assert [e["id"] for e in page["data"]] == [ignored["id"]]
    assert [e["id"] for e in get(f"?limit=1&cursor={page['next_cursor']}").json()["data"]] == [bought["id"]]
    assert get("?outcome=maybe").status_code == 400
    assert get(key=stripe.world.key).status_code == 403  # a proxy key reads nothing here


def test_odd_fields_in_signed_events_are_read_as_absent_never_a_500(stripe: Stripe, stripe_api) -> None:
    """A signed body is Stripe's, but its shape follows the endpoint's API version: a value of the
    wrong type or longer than its column is read as absent, and the event is still recorded."""
    long = "x" * 300
    session = _paid(stripe_api, [(PACK, 1)], client_reference_id="alice", payment_intent=long)
    session.update(amount_total=10**30, currency=["usd"], customer={"id": long}, subscription=7)
    session["metadata"] = {"tollgate_customer_id": "y" * 1000}
    assert stripe.deliver(event("checkout.session.completed", session)) == "credited"
    assert stripe.balance("alice") == 101_000
    purchase = db.session.scalar(select(Purchase))
    assert (purchase.amount_total, purchase.currency, purchase.payment_intent) == (None, None, None)
    cases = [
        ("checkout.session.completed", dict(checkout_session(), id=long)),
        ("checkout.session.completed", dict(checkout_session(), id=None)),
        ("charge.refunded", {"id": "ch_1", "amount": "2000", "amount_refunded": 5, "payment_intent": "pi_1"}),
        ("charge.refunded", {"id": "ch_2", "amount": 10**30, "amount_refunded": 5, "payment_intent": "pi_1"}),
        (
            "charge.refunded",
            {"id": "ch_3", "amount": True, "amount_refunded": True, "payment_intent": "pi_1"},
        ),
    ]
    for type, obj in cases:
        assert stripe.deliver(event(type, obj)) == "ignored", (type, obj)
    odd_deletion = {"id": "sub_1", "customer": ["cus_1"], "metadata": "none"}
    assert stripe.deliver(event("customer.subscription.deleted", odd_deletion)) == "cancelled"  # kept
    garbage_lines = {
        "id": "in_1",
        "billing_reason": "subscription_cycle",
        "customer": "cus_1",
        "lines": {"data": [1, None, {"pricing": "x"}]},
    }
    assert stripe.deliver(event("invoice.paid", garbage_lines)) == "needs_review"
    assert stripe.balance("alice") == 101_000
