"""Refused calls counted (SPEC 5.5; issue 13 acceptance 4): per customer, code and hour, with the
last refusal, visible within 10 s, written in batches whatever the rate of refusals."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import event, select

from app.extensions import db
from app.proxy.refusals import RefusalCounter
from tests.conftest import MASTER_KEY
from tests.factories import World, chat


def refusals(world: World, customer_id: str) -> dict:
    answer = requests.get(
        f"{world.url}/api/customers/{customer_id}/refusals",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_refusal_is_visible_in_the_api_within_10_seconds(world: World):
    world.give_customer("c", 10_000, blocked=True)
    assert refusals(world, "c") == {"last": None, "hours": []}
    answer = chat(world.url, world.key, "c")
    assert answer.status_code == 403
    deadline = time.monotonic() + 10
    while (seen := refusals(world, "c"))["last"] is None and time.monotonic() < deadline:
        threading.Event().wait(0.2)  # the process's flusher writes every 2 s
    assert seen["last"]["code"] == "customer_blocked"
    assert seen["last"]["message"] == "Customer c is blocked."
    assert seen["last"]["model"] == "gpt-test"
    assert [(h["code"], h["count"]) for h in seen["hours"]] == [("customer_blocked", 1)]


@pytest.fixture
def held_counter(world: World) -> Iterator[RefusalCounter]:
    """The gateway's counter, replaced by one that writes only when the test flushes it."""
    gateway = world.app.extensions["tollgate.gateway"]
    real = gateway.refusals
    gateway.refusals = RefusalCounter(db.engine, every_s=3600)
    yield gateway.refusals
    gateway.refusals = real


def test_200_refusals_from_20_threads_are_all_answered_and_counted_in_two_statements(
    world: World, held_counter: RefusalCounter
):
    world.give_customer("c", 10_000, blocked=True)
    written: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "refusal" in statement.lower() and statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            written.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        answers: list[int] = []

        def refused_ten_times() -> None:
            for _ in range(10):
                answers.append(chat(world.url, world.key, "c").status_code)

        threads = [threading.Thread(target=refused_ten_times) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [403] * 200
        assert written == []  # nothing on the refused calls' own path
        assert held_counter.flush() == 2  # one statement for the counts, one for the last refusal
        assert len(written) == 2
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert [(h["code"], h["count"]) for h in refusals(world, "c")["hours"]] == [("customer_blocked", 200)]
    assert held_counter.flush() == 0  # nothing left over


def test_each_refusal_code_is_counted_under_its_own_name(world: World, held_counter: RefusalCounter):
    world.give_customer("poor", 0)
    world.give_customer("low", 10_000, shedding_tier="low")
    assert chat(world.url, world.key, "poor").json()["error"]["code"] == "insufficient_tokens"
    requests.patch(
        f"{world.url}/api/settings",
        json={"shedding_level": "low"},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert chat(world.url, world.key, "low").json()["error"]["code"] == "load_shed"
    assert chat(world.url, world.key, "low").json()["error"]["code"] == "load_shed"
    held_counter.flush()
    assert [(h["code"], h["count"]) for h in refusals(world, "poor")["hours"]] == [("insufficient_tokens", 1)]
    assert [(h["code"], h["count"]) for h in refusals(world, "low")["hours"]] == [("load_shed", 2)]
    assert refusals(world, "low")["last"]["code"] == "load_shed"


def test_a_call_that_is_not_a_customers_refusal_is_not_counted(world: World, held_counter: RefusalCounter):
    world.give_customer("c", 10_000)
    assert chat(world.url, world.key, "c", model="no-such-model").status_code == 404
    held_counter.flush()
    assert refusals(world, "c") == {"last": None, "hours": []}


def test_counts_are_kept_past_the_seven_days_shown_and_forgotten_after_the_retention(
    app, world: World, held_counter: RefusalCounter
):
    """The scheduler keeps counts for the dashboard's ranges (KEPT); a customer's Requests tab and
    the API still show only the last 7 days."""
    from datetime import timedelta

    from app.cli import add_admin
    from app.customers.refusals import KEPT, forget_old_refusals
    from app.db import now_utc
    from app.models import RefusalCount
    from tests.admin.test_sign_in_and_customers import PASSWORD, client_for, sign_in

    world.give_customer("c", 10_000, blocked=True)
    for age in (KEPT + timedelta(hours=2), timedelta(days=8), timedelta(0)):
        held_counter.clock = lambda age=age: now_utc() - age
        chat(world.url, world.key, "c")
    held_counter.clock = now_utc
    held_counter.flush()
    assert forget_old_refusals(db.engine, now_utc()) == 1
    hours = db.session.scalars(select(RefusalCount.hour).order_by(RefusalCount.hour)).all()
    assert len(hours) == 2 and now_utc() - hours[0] > timedelta(days=8)
    assert [h["count"] for h in refusals(world, "c")["hours"]] == [1]
    add_admin("owner@example.com", PASSWORD)
    db.session.commit()
    client = client_for(app)
    sign_in(client)
    page = client.get("/customers/c?tab=requests").data.decode()
    assert page.count('<tr class="refused-line"') == 1
    assert "customer_blocked</span> \u00d7 1" in page  # the 7 days' count per code
    app.extensions["tollgate.signin_throttle"].__init__(None)


def test_the_admins_requests_tab_shows_the_refusals_beside_the_served_calls(
    app, world: World, held_counter: RefusalCounter
):
    from app.cli import add_admin
    from tests.admin.test_sign_in_and_customers import PASSWORD, client_for, sign_in

    add_admin("owner@example.com", PASSWORD)
    db.session.commit()
    world.give_customer("c", 10_000, shedding_tier="low")
    assert chat(world.url, world.key, "c").status_code == 200
    requests.patch(
        f"{world.url}/api/settings",
        json={"shedding_level": "low"},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    assert chat(world.url, world.key, "c").status_code == 503
    held_counter.flush()
    client = client_for(app)
    sign_in(client)
    page = client.get("/customers/c?tab=requests").data.decode()
    calls = page[page.index('<table class="dash-table requests">') :]
    refused = calls[calls.index('<tr class="refused-line" data-code="load_shed">') :]
    refused = refused[: refused.index("</tr>")]
    assert "refused · load_shed" in refused and "gpt-test" in refused and "Shedding load" in refused
    assert re.search(r"\u00d7 <span[^>]*>1</span>", refused)
    assert calls.index("refused-line") < calls.index('data-label="Latency"')  # newest first: above the call
    app.extensions["tollgate.signin_throttle"].__init__(None)


def test_a_batch_that_cannot_be_written_is_kept_for_the_next_flush(
    world: World, held_counter: RefusalCounter, monkeypatch
):
    world.give_customer("c", 10_000, blocked=True)
    chat(world.url, world.key, "c")

    def unavailable(*args, **kwargs):
        raise RuntimeError("the database is away")

    with monkeypatch.context() as patched:
        patched.setattr("app.proxy.refusals.write_transaction", unavailable)
        assert held_counter.flush() == 0
    chat(world.url, world.key, "c")
    assert held_counter.flush() == 2
    assert [h["count"] for h in refusals(world, "c")["hours"]] == [2]


def test_an_older_last_refusal_never_replaces_a_newer_one(world: World, held_counter: RefusalCounter):
    from datetime import timedelta

    from app.db import now_utc

    world.give_customer("c", 10_000, blocked=True)
    now = now_utc()
    held_counter.clock = lambda: now
    chat(world.url, world.key, "c")
    held_counter.flush()
    late = RefusalCounter(db.engine, clock=lambda: now - timedelta(seconds=5), every_s=3600)
    late.note(world.project.id, "c", "load_shed", "older, from another worker", "gpt-test")
    late.flush()
    assert refusals(world, "c")["last"]["code"] == "customer_blocked"


def _raw_chat(world: World, customer_id: str, model_json: str) -> requests.Response:
    """A call whose `model` is written as raw JSON: escapes json.dumps would never produce."""
    messages = '[{"role": "user", "content": "hi"}]'
    body = f'{{"model": {model_json}, "user": "{customer_id}", "messages": {messages}}}'
    return requests.post(
        f"{world.url}/v1/chat/completions",
        data=body.encode(),
        headers={"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"},
        timeout=10,
    )


def test_a_model_no_database_can_store_neither_fails_the_flush_nor_any_later_one(
    world: World, held_counter: RefusalCounter
):
    """A blocked customer's call names any model: a lone surrogate cannot be encoded, and
    PostgreSQL refuses NUL in text. Kept as sent, it failed that flush and every later one."""
    world.give_customer("mallory", 10_000, blocked=True)
    world.give_customer("alice", 10_000, blocked=True)
    for model in ('"gpt\\ud800"', '"gpt\\u0000x"'):
        assert _raw_chat(world, "mallory", model).json()["error"]["code"] == "customer_blocked"
    assert held_counter.flush() == 2
    assert chat(world.url, world.key, "alice").status_code == 403
    assert held_counter.flush() == 2
    assert [(h["code"], h["count"]) for h in refusals(world, "alice")["hours"]] == [("customer_blocked", 1)]
    shown = refusals(world, "mallory")
    assert [(h["count"], h["model"]) for h in shown["hours"]] == [(2, "gpt?x")]
    assert shown["last"]["model"] == "gpt?x"


def test_a_burst_of_many_customers_refusals_is_written_in_chunks(
    world: World, held_counter: RefusalCounter, monkeypatch
):
    """However many customers a shedding burst refused, no statement binds more values than the
    databases take (PostgreSQL 65,535, SQLite 32,766): the counts go in chunks of CHUNK rows."""
    import app.proxy.refusals as counting

    assert counting.CHUNK * 7 < 32_766
    monkeypatch.setattr(counting, "CHUNK", 2)
    for n in range(5):
        world.give_customer(f"c{n}", 10_000, blocked=True)
        assert chat(world.url, world.key, f"c{n}").status_code == 403
    assert held_counter.flush() == 3 + 1  # three chunks of counts, one statement for the last refusals
    for n in range(5):
        assert [(h["code"], h["count"]) for h in refusals(world, f"c{n}")["hours"]] == [
            ("customer_blocked", 1)
        ]


def test_a_model_with_a_no_break_space_is_kept_as_sent(world: World, held_counter: RefusalCounter):
    world.give_customer("c", 10_000, blocked=True)
    assert _raw_chat(world, "c", '"my\\u00a0model\\u3000x"').json()["error"]["code"] == "customer_blocked"
    held_counter.flush()
    assert refusals(world, "c")["last"]["model"] == "my\u00a0model\u3000x"


def test_a_customer_whose_calls_are_all_refused_is_still_seen(world: World, held_counter: RefusalCounter):
    """Waiting for approval (0 tokens), every call refused: the admin's "last seen" says when it
    last tried, not "never"."""
    from app.db import now_utc

    world.give_customer("waiting", 0)
    world.customer("waiting").last_seen_at = None
    world.commit()
    before = now_utc()
    assert chat(world.url, world.key, "waiting").json()["error"]["code"] == "insufficient_tokens"
    held_counter.flush()
    db.session.expire_all()
    assert world.customer("waiting").last_seen_at >= before.replace(microsecond=0)
