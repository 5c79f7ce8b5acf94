"""Approval and refusals in the admin (issue 16, items 1 and 2): the approval queue filter, Approve
on the customer page and in bulk (the operation the API's approve uses), the "refused in the last
24 h" filter and count, and the Requests tab with refused calls among the served ones."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event, select
from werkzeug.datastructures import MultiDict

from app.db import now_utc
from app.extensions import db
from app.metering.credits import add_or_set
from app.models import Event, UsageRecord
from app.proxy.refusals import RefusalCounter
from tests.admin.test_sign_in_and_customers import PASSWORD, client_for, form_post, sign_in
from tests.factories import World, assign

X = "\u00d7"  # the multiplication sign of a refused line: "<code> X <count>"


def waiting(world: World, *customer_ids: str) -> None:
    """Customers made with no tokens: the approval queue (SPEC 6)."""
    for customer_id in customer_ids:
        world.give_customer(customer_id, 0)


def row_of(page: str, customer_id: str) -> str:
    """The list's table row of one customer."""
    start = page.index(f"/customers/{customer_id}")
    return page[page.rindex("<tr", 0, start) : page.index("</tr>", start)]


def approvals(world: World) -> list[tuple[str, int]]:
    """The `customer.approved` events recorded: (customer id, tokens)."""
    db.session.expire_all()
    return [
        (e.customer_external_id, e.data["tokens"])
        for e in db.session.scalars(select(Event).where(Event.type == "customer.approved").order_by(Event.id))
    ]


def viewer_client(app):
    viewer = client_for(app)
    sign_in(viewer, email="viewer@example.com", password=PASSWORD)
    return viewer


def test_the_awaiting_filter_lists_the_queue_oldest_first_and_the_list_marks_every_waiting_row(
    owner, world: World
):
    pro = world.add_tier({"key": "pro", "name": "Pro"})
    waiting(world, "zed", "amy")  # zed first, and on a tier listed after amy's when grouped
    assign(world, "zed", pro)
    world.give_customer("paid", 100)
    queue = owner.get("/customers?awaiting=1").data.decode()
    listed = re.findall(r'href="/customers/([\w-]+)"', queue[queue.index('id="queue-title"') :])
    assert listed == ["zed", "amy"]  # oldest first, not by tier or name
    assert "2 customers, oldest first" in queue
    assert 'name="awaiting" value="1" checked' in queue
    everyone = owner.get("/customers").data.decode()
    assert "awaiting approval" in row_of(everyone, "zed") and "awaiting approval" in row_of(everyone, "amy")
    assert "awaiting approval" not in row_of(everyone, "acme") + row_of(everyone, "paid")
    found = owner.get("/customers?awaiting=1&q=amy").data.decode()
    assert "/customers/amy" in found and "/customers/zed" not in found
    for customer_id in ("zed", "amy"):  # any credit ends the wait
        add_or_set(
            db.session.connection(),
            world.customer(customer_id).id,
            "add",
            5,
            source="tests",
            reason="",
            now=now_utc(),
        )
    db.session.commit()
    assert "No customer is awaiting approval." in owner.get("/customers?awaiting=1").data.decode()


def test_the_queue_pages_oldest_first_in_a_few_statements(owner, world: World):
    waiting(world, *(f"w{i:03d}" for i in range(55)))
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        first = owner.get("/customers?awaiting=1").data.decode()
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(statements) <= 6, statements
    shown = re.findall(r'href="/customers/(w\d+)"', first)
    assert shown == [f"w{i:03d}" for i in range(50)]
    nxt = re.search(r'href="(/customers\?after=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert "awaiting=1" in nxt
    second = owner.get(nxt).data.decode()
    assert re.findall(r'href="/customers/(w\d+)"', second) == [f"w{i:03d}" for i in range(50, 55)]


def test_approve_on_the_customer_page_credits_through_the_apis_operation(owner, world: World):
    world.set(approval_tokens=5000)
    waiting(world, "newcomer")
    page = owner.get("/customers/newcomer").data.decode()
    assert '<span class="badge waiting">Awaiting approval</span>' in page
    assert re.search(r'<input[^>]*name="approve_tokens"[^>]*value="5000"', page)  # prefilled
    done = form_post(owner, "/customers/newcomer/approve", {"approve_tokens": "250"}, "/customers/newcomer")
    assert done.status_code == 302
    after = owner.get(done.headers["Location"]).data.decode()
    assert "Approved: 250 tokens credited, balance 250." in after
    assert "Awaiting approval" not in after and 'name="approve_tokens"' not in after
    [_, entry] = world.ledger("newcomer")
    assert (entry.kind, entry.amount, entry.reason, entry.source) == (
        "adjustment",
        250,
        "approved",
        "admin:owner@example.com",
    )
    assert approvals(world) == [("newcomer", 250)]

    again = form_post(owner, "/customers/newcomer/approve", {"approve_tokens": "250"}, "/customers/acme")
    text = again.data.decode()
    assert again.status_code == 409 and "no longer awaiting approval" in text
    assert len(world.ledger("newcomer")) == 2 and len(approvals(world)) == 1


def test_approve_with_the_default_amount_and_bad_amounts_in_the_forms_words(owner, world: World):
    waiting(world, "newcomer")
    page = "/customers/newcomer"
    for sent, message in [
        ("", "Tokens to credit: enter an amount (the project has no approval amount in its settings)."),
        ("0", "Tokens to credit: enter from 1 to"),
        ("-4", "Tokens to credit: enter from 1 to"),
        ("lots", "Tokens to credit: enter a whole number of tokens, like 5000."),
    ]:
        refused = form_post(owner, "/customers/newcomer/approve", {"approve_tokens": sent}, page)
        text = refused.data.decode()
        assert refused.status_code == 400 and message in text, (sent, text[-2000:])
        assert text.count('class="field-error"') == 1
    assert [e.kind for e in world.ledger("newcomer")] == ["initial_grant"] and approvals(world) == []
    world.set(approval_tokens=700)
    assert "Empty: the project&#39;s approval amount, 700 tokens." in owner.get(page).data.decode()
    assert form_post(owner, "/customers/newcomer/approve", {"approve_tokens": ""}, page).status_code == 302
    assert world.customer("newcomer").token_balance == 700 and approvals(world) == [("newcomer", 700)]


def test_viewers_see_the_state_but_no_approve_form(app, owner, world: World):
    world.set(approval_tokens=100)
    waiting(world, "newcomer")
    viewer = viewer_client(app)
    page = viewer.get("/customers/newcomer").data.decode()
    assert "Awaiting approval" in page and "An owner can approve it." in page
    assert "/customers/newcomer/approve" not in page and 'name="approve_tokens"' not in page
    queue = viewer.get("/customers?awaiting=1").data.decode()
    assert (
        "/customers/newcomer" in queue
        and 'name="approve_ids"' not in queue
        and "Approve selected" not in queue
    )
    refused = form_post(viewer, "/customers/newcomer/approve", {"approve_tokens": "5"}, "/customers/newcomer")
    assert refused.status_code == 403
    bulk = form_post(viewer, "/customers/approve?awaiting=1", {"approve_ids": "newcomer"}, "/customers")
    assert bulk.status_code == 403
    assert world.customer("newcomer").token_balance == 0


def test_bulk_approve_approves_the_ticked_ones_and_reports_those_no_longer_waiting(owner, world: World):
    from app.customers import operations as ops

    world.set(approval_tokens=1000)
    waiting(world, "a", "b", "c", "d", "untouched")
    queue = owner.get("/customers?awaiting=1").data.decode()
    assert re.search(r'<input[^>]*name="approve_tokens"[^>]*value="1000"', queue)
    assert 'action="/customers/approve?awaiting=1"' in queue
    # "d" is approved elsewhere (the API, another admin) while this list is open.
    ops.approve(db.session, world.project, world.customer("d"), 10, "api", now_utc())
    db.session.commit()
    picked = [("approve_ids", name) for name in ("a", "b", "c", "d", "ghost")]
    done = form_post_pairs(owner, "/customers/approve?awaiting=1", [*picked, ("approve_tokens", "700")])
    assert done.status_code == 302 and done.headers["Location"] == "/customers?awaiting=1"
    page = owner.get(done.headers["Location"]).data.decode()
    assert "Approved 3 customers with 700 tokens each: a, b, c." in page
    assert "Not approved, no longer awaiting approval: d, ghost." in page
    assert sorted(approvals(world)) == [("a", 700), ("b", 700), ("c", 700), ("d", 10)]
    assert [world.customer(c).token_balance for c in "abcd"] == [700, 700, 700, 10]
    assert re.findall(r'href="/customers/(\w+)"', page[page.index('id="queue-title"') :]) == ["untouched"]


def form_post_pairs(client, path: str, pairs: list[tuple[str, str]]):
    """A form post with repeated fields (ticked checkboxes), with the page's CSRF token and project."""
    from tests.admin.test_sign_in_and_customers import csrf, hidden_inputs

    page = client.get("/customers?awaiting=1")
    sent = [(name.decode(), value.decode()) for name, value in hidden_inputs(page.data).items()]
    return client.post(path, data=MultiDict([*sent, ("csrf_token", csrf(page.data)), *pairs]))


def test_bulk_approve_refuses_a_bad_amount_or_no_choice_and_changes_nothing(owner, world: World):
    waiting(world, "a", "b")
    bad = form_post_pairs(
        owner, "/customers/approve?awaiting=1", [("approve_ids", "a"), ("approve_tokens", "-1")]
    )
    text = bad.data.decode()
    assert bad.status_code == 400 and "Tokens to credit: enter from 1 to" in text
    assert re.search(r'<input type="checkbox" name="approve_ids" value="a"[^>]*checked', text)  # kept ticked
    no_amount = form_post_pairs(owner, "/customers/approve?awaiting=1", [("approve_ids", "a")])
    assert no_amount.status_code == 400 and "enter an amount" in no_amount.data.decode()
    none = form_post_pairs(owner, "/customers/approve?awaiting=1", [("approve_tokens", "5")])
    assert none.status_code == 302
    assert (
        "Nothing was approved: tick from 1 to 500 customers"
        in owner.get("/customers?awaiting=1").data.decode()
    )
    assert approvals(world) == [] and world.customer("a").token_balance == 0


@pytest.fixture
def counter(world: World):
    """A refusal counter of the test's own, written when the test flushes it, at the test's time."""
    return RefusalCounter(db.engine, every_s=3600)


def refuse(counter: RefusalCounter, world: World, customer_id: str, code: str, at, message="", times=1):
    counter.clock = lambda: at
    for _ in range(times):
        counter.note(world.project.id, customer_id, code, message or f"{code} for {customer_id}", "gpt-test")


def test_the_refused_filter_and_the_count_of_the_last_24_hours(owner, world: World, counter: RefusalCounter):
    now = now_utc()
    for customer_id in ("noisy", "edge", "old", "quiet"):
        world.give_customer(customer_id, 10)
    refuse(counter, world, "noisy", "insufficient_tokens", now - timedelta(minutes=5), times=3)
    refuse(counter, world, "noisy", "customer_blocked", now - timedelta(hours=2), times=2)
    refuse(counter, world, "edge", "load_shed", now - timedelta(hours=23, minutes=50))
    refuse(counter, world, "old", "load_shed", now - timedelta(hours=24, minutes=10))
    counter.flush()
    refused = owner.get("/customers?refused=1").data.decode()
    listed = set(
        re.findall(r'href="/customers/(\w+)"', refused[refused.index("</form>", refused.index("Filter")) :])
    )
    assert listed == {"noisy", "edge"}
    assert "5 refused · 24 h" in row_of(refused, "noisy") and "1 refused · 24 h" in row_of(refused, "edge")
    everyone = owner.get("/customers").data.decode()
    assert "5 refused · 24 h" in row_of(everyone, "noisy")
    assert "refused" not in row_of(everyone, "old") and "refused" not in row_of(everyone, "quiet")
    both = owner.get("/customers?refused=1&awaiting=1").data.decode()
    assert "No customers match." in both


def test_the_requests_tab_puts_refused_calls_among_the_served_ones_newest_first(
    owner, world: World, counter: RefusalCounter
):
    # Half past an hour: the two refusals 2 h 10 min and 2 h ago fall in one UTC hour whenever it runs.
    now = now_utc().replace(minute=30, second=0, microsecond=0) - timedelta(hours=1)
    customer = world.give_customer("c", 10)
    served(world, customer.id, [now - timedelta(hours=3), now - timedelta(hours=1), now])
    refuse(
        counter, world, "c", "insufficient_tokens", now - timedelta(hours=2, minutes=10), "No tokens: first"
    )
    refuse(counter, world, "c", "insufficient_tokens", now - timedelta(hours=2), "No tokens: latest", times=2)
    refuse(counter, world, "c", "customer_blocked", now - timedelta(minutes=30), "Customer c is blocked.")
    counter.flush()
    page = owner.get("/customers/c?tab=requests").data.decode()
    assert timeline(page) == [
        "served",
        f"customer_blocked {X} 1 · gpt-test · Customer c is blocked.",
        "served",
        f"insufficient_tokens {X} 3 · gpt-test · No tokens: latest",  # its hour's latest example
        "served",
    ]
    summary = page[page.index('id="refusals"') : page.index("</section>", page.index('id="refusals"'))]
    assert f"insufficient_tokens</span> {X} 3" in summary and f"customer_blocked</span> {X} 1" in summary


def served(world: World, customer_pk: int, times) -> None:
    """Usage records of served calls at the given times, oldest first (ids in that order)."""
    db.session.execute(
        UsageRecord.__table__.insert(),
        [
            dict(
                request_id=f"req-{customer_pk}-{i}",
                project_id=world.project.id,
                customer_id=customer_pk,
                endpoint="chat/completions",
                model_requested="gpt-test",
                model_served="gpt-test",
                model_tier="standard",
                prompt_tokens=3,
                completion_tokens=4,
                total_tokens=7,
                tokens_charged=7,
                cost_nusd=10,
                status=200,
                stream=False,
                client_disconnected=False,
                overage=False,
                latency_ms=12,
                created_at=at,
            )
            for i, at in enumerate(times)
        ],
    )
    db.session.commit()


def timeline(page: str) -> list[str]:
    """The Requests tab's lines, top to bottom: "served", or a refused line's code, count, model, message."""
    table = page[
        page.index('<table class="dash-table requests">') : page.index("</table>", page.index("requests"))
    ]
    lines = []
    for row in re.findall(r"<tr[ >].*?</tr>", table, flags=re.S)[1:]:
        if "refused-line" not in row:
            lines.append("served")
            continue
        cell = re.sub(r"<[^>]+>", "", row.split('data-label="Refused"', 1)[1].split(">", 1)[1])
        lines.append(" ".join(cell.split()).removeprefix("refused · "))
    return lines


def test_refused_lines_page_with_the_served_calls(owner, world: World, counter: RefusalCounter):
    now = now_utc().replace(microsecond=0)
    customer = world.give_customer("c", 10)
    start = now - timedelta(minutes=200)
    served(world, customer.id, [start + timedelta(minutes=i) for i in range(105)])  # 100 + 5: two pages
    # Page 1 shows calls 104..5 (minutes 104 to 5), page 2 calls 4..0.
    refuse(counter, world, "c", "load_shed", start + timedelta(minutes=50, seconds=30), "on page one")
    refuse(counter, world, "c", "customer_blocked", start + timedelta(minutes=2, seconds=30), "on page two")
    refuse(counter, world, "c", "budget_exceeded", now, "newest of all")
    counter.flush()
    first = owner.get("/customers/c?tab=requests").data.decode()
    lines = timeline(first)
    assert len(lines) == 102 and lines[0].startswith("budget_exceeded")
    assert lines.index(f"load_shed {X} 1 · gpt-test · on page one") == 1 + (
        104 - 50
    )  # between calls 51 and 50
    assert not any("on page two" in line for line in lines)
    older = re.search(r'href="(/customers/c\?tab=requests&amp;before=\d+)">Older', first).group(1)
    second = timeline(owner.get(older.replace("&amp;", "&")).data.decode())
    assert second == [
        "served",
        "served",
        f"customer_blocked {X} 1 · gpt-test · on page two",
        "served",
        "served",
        "served",
    ]


def test_a_page_after_a_call_that_no_longer_exists_keeps_its_refused_lines(
    owner, world: World, counter: RefusalCounter
):
    """`?before=` names a call deleted since (or a hand-made link): the calls under it are listed,
    and so are the refusals of their time range; none vanish for want of that call's time."""
    now = now_utc().replace(microsecond=0)
    customer = world.give_customer("c", 10)
    served(world, customer.id, [now - timedelta(hours=3), now - timedelta(hours=1)])
    refuse(counter, world, "c", "insufficient_tokens", now - timedelta(hours=2), "between the calls")
    counter.flush()
    assert timeline(owner.get("/customers/c?tab=requests&before=999999").data.decode()) == [
        "served",
        f"insufficient_tokens {X} 1 · gpt-test · between the calls",
        "served",
    ]
