"""The web admin's sign-in and customers list, through Flask's test client (browser tests come with the
rest of the admin)."""

from __future__ import annotations

import re

import pytest
from flask import g
from flask.testing import FlaskClient
from sqlalchemy import event

from app.cli import add_admin
from app.db import now_utc
from app.extensions import db
from tests.factories import World, assign

PASSWORD = "correct horse battery"


class AdminClient(FlaskClient):
    """A test client whose requests do not inherit the signed-in user cached on the tests' app context.

    The `world` fixture keeps an app context open for database access; Flask reuses it for the
    client's requests, and Flask-Login and Flask-WTF cache the user and the CSRF token on its `g`.
    A browser never shares those.
    """

    def open(self, *args, **kwargs):
        g.pop("_login_user", None)
        g.pop("csrf_token", None)
        return super().open(*args, **kwargs)


def client_for(app) -> AdminClient:
    return AdminClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def browser(app, world: World):
    add_admin("owner@example.com", PASSWORD)
    db.session.commit()
    yield client_for(app)
    app.extensions["tollgate.signin_throttle"].__init__(None)  # a fresh window for the next test


def csrf(html: bytes) -> str:
    tag = re.search(rb'<input[^>]*name="csrf_token"[^>]*>', html).group(0)
    return re.search(rb'value="([^"]+)"', tag).group(1).decode()


def sign_in(client, email="owner@example.com", password=PASSWORD, next_=None):
    page = client.get("/auth/sign-in")
    url = "/auth/sign-in" + (f"?next={next_}" if next_ else "")
    return client.post(url, data={"email": email, "password": password, "csrf_token": csrf(page.data)})


def test_pages_need_a_signed_in_admin(browser):
    assert browser.get("/").headers["Location"].endswith("/dashboard")
    resp = browser.get("/customers")
    assert resp.status_code == 302 and "/auth/sign-in" in resp.headers["Location"]


def test_sign_in_and_out(browser):
    wrong = sign_in(browser, password="nope")
    assert wrong.status_code == 401 and b"do not match" in wrong.data
    ok = sign_in(browser, next_="/customers")
    assert ok.status_code == 302 and ok.headers["Location"] == "/customers"
    assert browser.get("/customers").status_code == 200
    page = browser.get("/customers")
    out = browser.post("/auth/sign-out", data={"csrf_token": csrf(page.data)})
    assert out.status_code == 302
    assert browser.get("/customers").status_code == 302


def test_no_open_redirect_after_sign_in(browser):
    assert sign_in(browser, next_="https://evil.example/").headers["Location"] == "/"


def test_sign_in_without_csrf_token_is_refused(browser):
    resp = browser.post("/auth/sign-in", data={"email": "owner@example.com", "password": PASSWORD})
    assert resp.status_code == 400
    assert browser.get("/customers").status_code == 302


def test_failed_sign_ins_are_throttled(browser):
    for _ in range(5):
        assert sign_in(browser, password="guess").status_code == 401
    throttled = sign_in(browser)  # even the right password waits out the window
    assert throttled.status_code == 429 and b"Too many failed attempts" in throttled.data
    # The admin, from elsewhere, is not locked out by someone else's guesses.
    elsewhere = client_for(browser.application)
    elsewhere.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert sign_in(elsewhere).status_code == 302


def test_one_address_guessing_many_accounts_is_throttled(browser):
    for n in range(20):
        assert sign_in(browser, email=f"guess{n}@example.com", password="guess").status_code == 401
    assert sign_in(browser).status_code == 429


def test_customers_grouped_by_tier_searched_and_filtered(browser, world: World):
    pro = world.add_tier({"key": "pro", "name": "Pro"})
    for i in range(3):
        world.give_customer(f"free-{i}", 100)
    for i in range(2):
        world.give_customer(f"pro-{i}", 5_000_000)
        assign(world, f"pro-{i}", pro, now=now_utc())
    boss = world.customer("free-1")
    boss.blocked, boss.email = True, "boss@acme.io"
    world.commit()
    sign_in(browser)
    page = browser.get("/customers").data.decode()
    assert "Default New Customer Tier" in page and "3 customers" in page
    assert "Pro" in page and "2 customers" in page and "5M" in page
    found = browser.get("/customers?q=acme.io").data.decode()
    assert "free-1" in found and "free-0" not in found
    blocked = browser.get("/customers?blocked=1").data.decode()
    assert "free-1" in blocked and "free-2" not in blocked
    only_pro = browser.get(f"/customers?tier={pro.id}").data.decode()
    assert "pro-0" in only_pro and "free-0" not in only_pro


def test_the_list_pages_and_runs_a_bounded_number_of_statements(browser, world: World):
    for i in range(60):
        world.give_customer(f"c{i:03d}", 10)
    sign_in(browser)
    statements = []
    listener = lambda *args: statements.append(1)  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        first = browser.get("/customers").data.decode()
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert "c000" in first and "c049" in first and "c050" not in first
    assert len(statements) <= 6, statements
    after = re.search(r'href="(/customers\?after=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = browser.get(after).data.decode()
    assert "c050" in second and "c059" in second and "c049" not in second and "Next page" not in second


def hidden_inputs(html: bytes) -> dict[bytes, bytes]:
    """What a browser sends besides the fields: CSRF token, the page's project, a one-time token."""
    return dict(re.findall(rb'<input type="hidden" name="(csrf_token|project|once)" value="([^"]*)"', html))


def form_post(client, path, data, page_path):
    page = client.get(page_path)
    sent = {name.decode(): value.decode() for name, value in hidden_inputs(page.data).items()}
    return client.post(path, data={**sent, **data, "csrf_token": csrf(page.data)})


@pytest.fixture
def owner(browser, world: World):
    world.give_customer("acme", 1000)
    sign_in(browser)
    return browser


def test_customer_page_tabs_render(owner, world: World):
    for tab, text in [
        ("details", "Save details"),
        ("usage", "Against the limit"),
        ("ledger", "initial grant"),
        ("requests", "No requests yet"),
    ]:
        page = owner.get(f"/customers/acme?tab={tab}")
        assert page.status_code == 200 and text in page.data.decode(), tab
    assert owner.get("/customers/acme?tab=nope").status_code == 404
    assert owner.get("/customers/nobody").status_code == 404


def test_details_are_saved_and_bad_input_is_shown_next_to_the_field(owner, world: World):
    page = "/customers/acme"
    good = {
        "name": "Acme Inc",
        "alias": "",
        "email": "ops@acme.io",
        "shedding_tier": "high",
        "allowed_regions": "us",
    }
    assert form_post(owner, "/customers/acme/details", good, page).status_code == 302
    customer = world.customer("acme")
    assert (customer.name, customer.email, customer.shedding_tier, customer.allowed_regions) == (
        "Acme Inc",
        "ops@acme.io",
        "high",
        ["us"],
    )
    for bad, message in [
        ({"name": ""}, "A name is required."),
        ({"allowed_regions": "mars"}, "Unknown region"),
        ({"email": "nope"}, "not an email"),
    ]:
        resp = form_post(owner, "/customers/acme/details", {**good, **bad}, page)
        assert resp.status_code == 400 and message in resp.data.decode()
    assert world.customer("acme").name == "Acme Inc"


def test_tokens_and_tier_change_from_the_usage_tab(owner, world: World):
    page = "/customers/acme?tab=usage"
    assert (
        form_post(
            owner, "/customers/acme/tokens", {"mode": "add", "amount": "500", "reason": "goodwill"}, page
        ).status_code
        == 302
    )
    assert world.customer("acme").token_balance == 1500
    [_, entry] = world.ledger("acme")
    assert (entry.kind, entry.amount, entry.source, entry.reason) == (
        "adjustment",
        500,
        "admin:owner@example.com",
        "goodwill",
    )
    refused = form_post(owner, "/customers/acme/tokens", {"mode": "set", "amount": "-5"}, page)
    assert refused.status_code == 400 and "cannot be set below 0" in refused.data.decode()
    assert (
        form_post(owner, "/customers/acme/tokens", {"mode": "set", "amount": "20"}, page).status_code == 302
    )
    assert world.customer("acme").token_balance == 20
    below = form_post(owner, "/customers/acme/tokens", {"mode": "add", "amount": "-21"}, page)
    text = below.data.decode()
    assert below.status_code == 400 and "never goes below 0" in text and 'class="field-error"' in text
    assert world.customer("acme").token_balance == 20 and len(world.ledger("acme")) == 3
    pro = world.add_tier({"key": "pro", "name": "Pro"})
    assert form_post(owner, "/customers/acme/tier", {"tier": str(pro.id)}, page).status_code == 302
    assert world.customer("acme").tier_id == pro.id
    assert "Pro" in owner.get(page).data.decode()


def test_viewers_read_but_cannot_change_and_csrf_is_required(app, world: World):
    world.give_customer("acme", 1000)
    add_admin("viewer@example.com", PASSWORD, role="viewer")
    db.session.commit()
    viewer = client_for(app)
    sign_in(viewer, email="viewer@example.com")
    assert viewer.get("/customers/acme?tab=usage").status_code == 200
    refused = form_post(viewer, "/customers/acme/tokens", {"mode": "add", "amount": "5"}, "/customers/acme")
    assert refused.status_code == 403
    add_admin("owner2@example.com", PASSWORD)
    db.session.commit()
    owner_client = client_for(app)
    sign_in(owner_client, email="owner2@example.com")
    no_token = owner_client.post("/customers/acme/tokens", data={"mode": "add", "amount": "5"})
    assert no_token.status_code == 400
    assert world.customer("acme").token_balance == 1000


def test_statements_stay_bounded_at_ten_thousand_customers(browser, world: World):
    """Issue 5, acceptance 4: the list and the customer page cost the same few statements at any size."""
    from app.models import Customer, LedgerEntry, UsageRecord

    now = now_utc()
    project_id, tier_id = world.project.id, world.project.default_tier_id
    db.session.execute(
        Customer.__table__.insert(),
        [
            dict(
                project_id=project_id,
                external_id=f"bulk-{i:05d}",
                name=f"Bulk {i}",
                token_balance=100,
                reserved_tokens=0,
                reserved_nusd=0,
                tier_id=tier_id,
                shedding_tier="middle",
                allowed_regions=[],
                blocked=False,
                spend_nusd=0,
                low_balance_notified=False,
                metadata={},
                created_at=now,
            )
            for i in range(10_000)
        ],
    )
    db.session.commit()
    heavy = world.give_customer("heavy", 0)
    db.session.execute(
        LedgerEntry.__table__.insert(),
        [
            dict(
                project_id=project_id,
                customer_id=heavy.id,
                kind="adjustment",
                amount=1,
                balance_after=i + 1,
                source="tests",
                reason="",
                created_at=now,
            )
            for i in range(2_000)
        ],
    )
    db.session.execute(
        UsageRecord.__table__.insert(),
        [
            dict(
                request_id=f"req-{i}",
                project_id=project_id,
                customer_id=heavy.id,
                endpoint="chat/completions",
                model_requested="gpt-test",
                model_served="gpt-test",
                model_tier="standard",
                prompt_tokens=1,
                completion_tokens=1,
                total_tokens=2,
                tokens_charged=2,
                cost_nusd=1,
                status=200,
                stream=False,
                client_disconnected=False,
                overage=False,
                latency_ms=1,
                created_at=now,
            )
            for i in range(2_000)
        ],
    )
    db.session.commit()
    sign_in(browser)
    counted: list[str] = []

    def count(conn, cursor, statement, *args):
        counted.append(statement)

    pages = [
        "/customers",
        "/customers?after=1.5000",
        "/customers?q=bulk-09999",
        "/customers?awaiting=1",
        "/customers?refused=1",
        "/customers/heavy",
        "/customers/heavy?tab=usage",
        "/customers/heavy?tab=ledger",
        "/customers/heavy?tab=requests",
    ]
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        for path in pages:
            counted.clear()
            resp = browser.get(path)
            assert resp.status_code == 200, path
            assert len(counted) <= 10, (path, len(counted))  # a constant: it does not grow with the data
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert "10001 customers" in browser.get("/customers").data.decode()  # the bulk ones and "heavy"


def test_a_customer_made_by_hand_gets_the_project_defaults_or_what_was_given(owner, world: World):
    from app.models.customer import Customer
    from app.models.ledger import LedgerEntry

    pro = world.add_tier({"key": "pro", "name": "Pro"})
    made = form_post(
        owner,
        "/customers",
        {"customer_id": "hand-made", "name": "Hand", "email": "h@example.com", "tokens": "", "tier": pro.id},
        "/customers",
    )
    assert made.status_code == 302 and made.headers["Location"].endswith("/customers/hand-made")
    customer = world.customer("hand-made")
    assert (customer.name, customer.email, customer.tier_id) == ("Hand", "h@example.com", pro.id)
    assert customer.token_balance == world.project.new_customer_initial_tokens
    entries = world.ledger("hand-made")
    assert [(e.kind, e.amount, e.source) for e in entries] == [
        ("initial_grant", world.project.new_customer_initial_tokens, "admin:owner@example.com")
    ]
    before = (
        db.session.scalar(db.select(db.func.count()).select_from(Customer)),
        db.session.scalar(db.select(db.func.count()).select_from(LedgerEntry)),
    )
    base = {
        "customer_id": "another",
        "name": "",
        "email": "",
        "tokens": "5",
        "tier": world.project.default_tier_id,
    }
    for bad, message in [
        ({"customer_id": "acme"}, "already exists"),
        ({"customer_id": ""}, "A customer id is required."),
        ({"tokens": "-5"}, "Enter 0 or more tokens."),
        ({"email": "not-an-email"}, "That is not an email address."),
        ({"tier": "999999"}, "Not a valid choice"),
    ]:
        resp = form_post(owner, "/customers", {**base, **bad}, "/customers")
        page = resp.data.decode()
        assert resp.status_code == 400 and message in page, (bad, page[-1500:])
        assert '<details class="card new-customer" open>' in page  # the form stays open, errors in view
    db.session.expire_all()
    assert (
        db.session.scalar(db.select(db.func.count()).select_from(Customer)),
        db.session.scalar(db.select(db.func.count()).select_from(LedgerEntry)),
    ) == before


def test_the_ledger_pages_through_every_entry_newest_first(owner, world: World):
    from app.metering.credits import add_or_set

    customer = world.customer("acme")
    for i in range(1, 151):
        add_or_set(
            db.session.connection(), customer.id, "add", i, source="test", reason=f"r{i}", now=now_utc()
        )
    db.session.commit()
    first = owner.get("/customers/acme?tab=ledger").data.decode()
    amounts = re.findall(r'<td class="num" data-label="Amount">\+([\d,]+)</td>', first)
    assert len(amounts) == 100 and amounts[0] == "150" and amounts[-1] == "51"
    older = re.search(r'href="(/customers/acme\?tab=ledger&amp;before=\d+)">Older', first).group(1)
    second = owner.get(older.replace("&amp;", "&")).data.decode()
    rest = re.findall(r'<td class="num" data-label="Amount">\+([\d,]+)</td>', second)
    assert rest[:50] == [str(n) for n in range(50, 0, -1)] and len(rest) == 51  # and the initial grant
    assert "Older" not in second and "← Newest" in second
