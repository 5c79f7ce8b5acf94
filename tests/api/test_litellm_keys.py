"""LiteLLM's virtual keys as Tollgate proxy keys (SPEC 6.1; issue 10, acceptance 4)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import requests
from sqlalchemy import event, func, select

from app.db import now_utc
from app.extensions import db
from app.keys.operations import create_key
from app.metering import estimate, key_budget
from app.metering.settlement import release_expired
from app.models.api_key import ApiKey
from app.models.usage import UsageRecord
from app.projects.operations import create_project
from tests.factories import World

PRICEY = {"input_per_mtok": "1000", "output_per_mtok": "1000"}  # $0.001 a token


@pytest.fixture
def admin(world: World) -> str:
    world.add_model(
        "gpt-pricey",
        [{"provider": "openai", "base_url": world.upstream.base_url, "model": "big"}],
        price=PRICEY,
    )
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    return key


def send(world: World, admin: str, method: str, path: str, body: dict | None = None, status: int = 200):
    resp = requests.request(
        method, world.url + path, json=body, headers={"Authorization": f"Bearer {admin}"}, timeout=30
    )
    assert resp.status_code == status, resp.text
    return resp.json()


def call(
    world: World, key: str, model: str = "gpt-test", user: str | None = None, **extra
) -> requests.Response:
    body = {
        "model": model,
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hello there"}],
        **extra,
    }
    if user is not None:
        body["user"] = user
    return requests.post(
        world.url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def held_nusd(completion: int) -> int:
    """What a call of `call()` to gpt-pricey holds: its prompt estimate and `completion` tokens."""
    body = {"model": "gpt-pricey", "max_tokens": 5, "messages": [{"role": "user", "content": "hello there"}]}
    return (estimate.chat_prompt(body).upper + completion) * 1_000_000


def test_generate_answers_the_secret_once_and_the_key_works_at_once(world: World, admin: str):
    made = send(
        world,
        admin,
        "POST",
        "/key/generate",
        {
            "key_alias": "batch-jobs",
            "models": [],
            "metadata": {"team": "core"},
            "user_id": "u-7",
            "aliases": {"mistral-7b": "gpt-3.5-turbo"},  # LiteLLM fields Tollgate has no use for
            "team_id": "t-1",
            "duration": None,
        },
    )
    secret = made["key"]
    assert secret.startswith("tg-") and made["key_alias"] == "batch-jobs" and made["models"] == []
    assert (made["metadata"], made["user_id"], made["expires"], made["blocked"]) == (
        {"team": "core"},
        "u-7",
        None,
        False,
    )
    stored = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == made["token"]))
    assert stored is not None and stored.scope == "proxy" and secret not in str(stored.__dict__)
    # No wait for the proxy's snapshot: LiteLLM's scripts call with a key as soon as it is made.
    assert call(world, secret).status_code == 200
    info = send(world, admin, "GET", f"/key/info?key={secret}")
    assert info["key"] == secret and "key" not in info["info"] and info["info"]["token"] == made["token"]
    assert send(world, admin, "GET", f"/key/info?key={made['token']}")["info"]["key_alias"] == "batch-jobs"
    listed = send(world, admin, "GET", "/key/list?user_id=u-7")
    assert listed == {"keys": [made["token"]], "total_count": 1, "current_page": 1, "total_pages": 1}
    full = send(world, admin, "GET", "/key/list?key_alias=batch-jobs&return_full_object=true")
    assert [k["token"] for k in full["keys"]] == [made["token"]]

    updated = send(
        world, admin, "POST", "/key/update", {"key": secret, "rpm_limit": 2, "key_alias": "renamed"}
    )
    assert (updated["rpm_limit"], updated["key_alias"]) == (2, "renamed")
    deleted = send(world, admin, "POST", "/key/delete", {"keys": [secret]})
    assert deleted == {"deleted_keys": [secret]}
    assert send(world, admin, "GET", f"/key/info?key={secret}", status=404)["error"]["code"] == "404"
    refused = call(world, secret)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    missing = send(world, admin, "POST", "/key/delete", {"keys": ["tg-no-such-key-0000000"]}, status=404)
    assert missing["error"]["param"] == "keys"


def test_a_models_allow_list_refuses_other_models_with_403(world: World, admin: str):
    secret = send(world, admin, "POST", "/key/generate", {"models": ["gpt-test", "gpt-4"]})["key"]
    assert call(world, secret).status_code == 200
    refused = call(world, secret, "gpt-pricey", user="someone")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"
    assert refused.json()["error"]["type"] == "permission_error"
    models = requests.get(world.url + "/models", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert [m["id"] for m in models.json()["data"]] == ["gpt-test"]
    everything = send(world, admin, "POST", "/key/update", {"key": secret, "models": []})
    assert everything["models"] == [] and call(world, secret, "gpt-pricey").status_code == 200


def test_a_keys_own_rate_limit_refuses_with_429(world: World, admin: str):
    secret = send(world, admin, "POST", "/key/generate", {"rpm_limit": 2})["key"]
    statuses = [call(world, secret, user=f"r{i}").status_code for i in range(3)]
    assert statuses == [200, 200, 429]
    refused = call(world, secret)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded" and refused.headers["Retry-After"]


def test_an_expired_key_is_refused_within_a_second(world: World, admin: str):
    made = send(world, admin, "POST", "/key/generate", {"duration": "2s"})
    expires = datetime.fromisoformat(made["expires"].replace("Z", "+00:00"))
    served, refused_at = 0, None
    deadline = expires.timestamp() + 1.5
    while time.time() < deadline:  # calls back to back, no sleep: the first refusal after expiry
        resp = call(world, made["key"])
        if resp.status_code == 401:
            refused_at = time.time()
            assert resp.json()["error"]["message"] == "Invalid API key: it has expired."
            break
        assert resp.status_code == 200 and time.time() < expires.timestamp() + 1
        served += 1
    assert served >= 1 and refused_at is not None
    assert expires.timestamp() <= refused_at < expires.timestamp() + 1


def test_a_blocked_key_is_refused_until_unblocked(world: World, admin: str):
    made = send(world, admin, "POST", "/key/generate", {})
    assert call(world, made["key"]).status_code == 200
    assert send(world, admin, "POST", "/key/block", {"key": made["token"]})["blocked"] is True
    cache = world.app.extensions["tollgate.gateway"].cache
    cache.invalidate()  # the snapshot's next check (within a second on its own)
    assert call(world, made["key"]).status_code == 401
    assert send(world, admin, "POST", "/key/unblock", {"key": made["key"]})["blocked"] is False
    cache.invalidate()
    assert call(world, made["key"]).status_code == 200


def test_a_keys_budget_is_never_exceeded_by_concurrent_calls(world: World, admin: str):
    """Acceptance 4: a budget worth about 4 calls, 20 threads x 2 calls, customers and none."""
    budget = Decimal(held_nusd(5) * 4) / 10**9  # four calls' holds: the estimate errs high
    made = send(
        world, admin, "POST", "/key/generate", {"max_budget": float(budget), "budget_duration": "30d"}
    )
    assert made["max_budget"] == float(budget) and made["budget_reset_at"] is not None
    results: list[requests.Response] = []
    start = threading.Barrier(20)

    def worker(i: int) -> None:
        start.wait()
        for _ in range(2):
            results.append(call(world, made["key"], "gpt-pricey", user=f"buyer{i}" if i % 2 else None))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    served = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code != 200]
    spent = sum((Decimal(r.headers["x-litellm-response-cost"]) for r in served), Decimal(0))
    assert len(served) >= 4 and spent <= budget
    assert Counter((r.status_code, r.json()["error"]["code"]) for r in refused) == {
        (429, "budget_exceeded"): len(refused)
    }
    message = refused[0].json()["error"]["message"]
    assert (
        message.startswith("Budget has been exceeded! Current cost: ") and "Calls in flight hold" in message
    )
    info = send(world, admin, "GET", f"/key/info?key={made['key']}")["info"]
    assert Decimal(info["spend_usd"]) == spent and info["reserved_usd"] == "0.000000000"
    key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.key_hash == made["token"]))
    recorded = db.session.scalar(
        select(func.sum(UsageRecord.cost_nusd)).where(UsageRecord.api_key_id == key_id)
    )
    assert Decimal(recorded) / 10**9 == spent

    # A higher budget applies to the very next call, and the spend so far still counts.
    send(world, admin, "POST", "/key/update", {"key": made["key"], "max_budget": float(budget * 2)})
    assert call(world, made["key"], "gpt-pricey").status_code == 200


def test_the_customer_calls_of_a_budgeted_key_are_shortened_to_what_it_still_pays(world: World, admin: str):
    """hard_cap: the last call that fits is served with a smaller completion, never past the budget."""
    budget = Decimal(held_nusd(10)) / 10**9  # the prompt and 10 completion tokens
    made = send(world, admin, "POST", "/key/generate", {"max_budget": float(budget)})
    served = call(world, made["key"], "gpt-pricey", user="cap", max_tokens=100)
    assert served.status_code == 200
    assert Decimal(served.headers["x-litellm-response-cost"]) <= budget
    assert served.json()["usage"]["completion_tokens"] == 10
    assert call(world, made["key"], "gpt-pricey", user="cap").status_code == 429


def test_a_budgeted_keys_calls_never_ask_for_more_than_their_hold_pays_for(world: World, admin: str):
    """hard_cap: a call with no completion limit is held at the tier's default reserve, and the
    upstream is asked for no more, so no answer can spend past the key's budget."""
    made = send(world, admin, "POST", "/key/generate", {"max_budget": 100})
    body = {"model": "gpt-pricey", "messages": [{"role": "user", "content": "hello there"}]}
    for user in (None, "reserved"):
        sent = dict(body, user=user) if user else body
        resp = requests.post(
            world.url + "/chat/completions",
            json=sent,
            headers={"Authorization": f"Bearer {made['key']}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        assert world.upstream.requests[-1]["json"]["max_tokens"] == 1024  # the default tier's reserve


def test_bad_key_bodies_get_litellm_errors(world: World, admin: str):
    for body, param in (
        ({"rpm_limit": -1}, "rpm_limit"),
        ({"max_budget": -2}, "max_budget"),
        ({"duration": "soon"}, "duration"),
        ({"budget_duration": "30x", "max_budget": 1}, "budget_duration"),
        ({"models": "gpt-test"}, "models"),
        ({"budget_duration": "30d"}, "budget_duration"),  # a period of no budget
        ({"key": "short"}, "key"),
    ):
        refused = send(
            world, admin, "POST", "/key/generate", body, status=422 if param in ("key", "models") else 400
        )
        assert refused["error"]["param"] == param, (body, refused)
    assert db.session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.scope == "proxy")) == 1


def test_another_projects_admin_key_finds_none_of_these_keys(world: World, admin: str):
    made = send(world, admin, "POST", "/key/generate", {"key_alias": "private"})
    other = create_project(db.session, "other", "Other")
    _, theirs = create_key(db.session, other, "ops", "admin")
    world.commit()
    for method, path, body in (
        ("GET", f"/key/info?key={made['key']}", None),
        ("POST", "/key/update", {"key": made["token"], "rpm_limit": 1}),
        ("POST", "/key/block", {"key": made["key"]}),
        ("POST", "/key/delete", {"keys": [made["key"]]}),
        ("POST", "/key/delete", {"key_aliases": ["private"]}),
    ):
        assert send(world, theirs, method, path, body, status=404)["error"]["code"] == "404"
    assert send(world, theirs, "GET", "/key/list")["total_count"] == 0
    key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.key_hash == made["token"]))
    assert send(world, theirs, "GET", f"/api/keys/{key_id}", status=404)["error"]["code"] == "not_found"
    assert [k["name"] for k in send(world, theirs, "GET", "/api/keys")["data"]] == ["ops"]
    mine = send(world, admin, "GET", f"/api/keys/{key_id}")
    assert (mine["name"], mine["rpm_limit"], mine["blocked"], mine["revoked_at"]) == (
        "private",
        None,
        False,
        None,
    )
    assert call(world, made["key"]).status_code == 200


def test_the_scheduler_frees_a_dead_calls_hold_on_its_key(world: World, admin: str):
    """A key's budget hold carries the call's expiry: if its process dies, the scheduler frees it."""
    made = send(world, admin, "POST", "/key/generate", {"max_budget": 1})
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == made["token"]))
    now = now_utc()
    hold = key_budget.reserve(
        db.engine, key.id, 10, lambda c: 1000 * (20 + c), True, 1, now, now + timedelta(minutes=5)
    )
    assert hold is not None and hold.nusd == 30_000
    assert release_expired(db.engine, now + timedelta(minutes=4)) == 0
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).reserved_nusd == 30_000
    assert release_expired(db.engine, now + timedelta(minutes=6)) == 1
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).reserved_nusd == 0
    assert db.session.get(ApiKey, key.id).budget_spend_nusd == 0


def test_a_streamed_call_with_a_budgeted_key_is_counted_exactly(world: World, admin: str):
    made = send(world, admin, "POST", "/key/generate", {"max_budget": 1, "budget_duration": "1d"})
    with requests.post(
        world.url + "/v1/chat/completions",
        json={
            "model": "gpt-pricey",
            "stream": True,
            "max_tokens": 7,
            "user": "streamer",
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"Authorization": f"Bearer {made['key']}"},
        stream=True,
        timeout=30,
    ) as resp:
        assert resp.status_code == 200 and b"[DONE]" in b"".join(resp.iter_content(None))
    records = world.usage_records("streamer")
    assert len(records) == 1 and records[0].cost_nusd > 0
    info = send(world, admin, "GET", f"/key/info?key={made['token']}")["info"]
    assert (
        Decimal(info["spend_usd"]) * 10**9 == records[0].cost_nusd and info["reserved_usd"] == "0.000000000"
    )


def test_a_key_id_past_any_stored_one_is_a_404(world: World, admin: str):
    """Found by schemathesis on PostgreSQL: an id past its integer range was a 500."""
    for key_id in (2**31, 3345208691903, 0):
        assert send(world, admin, "GET", f"/api/keys/{key_id}", status=404)["error"]["code"] == "not_found"


def test_a_key_list_page_past_any_offset_is_a_422_not_a_500(world: World, admin: str):
    """Found by schemathesis: a page number past SQLite's integer made the offset overflow."""
    refused = send(world, admin, "GET", "/key/list?page=5333537675494427721728", status=422)
    assert refused["error"]["param"] == "page"
    assert send(world, admin, "GET", "/key/list?page=1000000")["keys"] == []


def test_a_made_up_key_costs_one_query_per_snapshot_check(world: World, admin: str):
    """Unknown keys are looked up (a key made a moment ago must work), but a flood of the same
    made-up key reads the database once per snapshot check, not once per call."""
    cache = world.app.extensions["tollgate.gateway"].cache
    saved, still = cache.clock, cache.clock()
    cache.clock = lambda: still  # no snapshot check during the calls below
    cache.invalidate()
    cache.current()
    lookups: list[str] = []

    def count(conn, cursor, statement, *args):
        if "FROM api_keys" in statement and "key_hash" in statement:
            lookups.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            assert call(world, "tg-made-up-key-0123456789abcdef").status_code == 401
        assert len(lookups) == 1
        cache.invalidate()  # the next check forgets what was unknown
        assert call(world, "tg-made-up-key-0123456789abcdef").status_code == 401
        assert len(lookups) == 2
        made = send(world, admin, "POST", "/key/generate", {})
        assert call(world, made["key"]).status_code == 200  # never looked up before: found at once
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
        cache.clock = saved


def test_values_no_column_can_hold_are_refused_not_a_500(world: World, admin: str):
    """Found by the schemathesis run: a limit past 64 bits, or half a surrogate pair in a name."""
    raw = '{"models": ["gpt-test"], "key_alias": "half \\ud800 pair"}'
    refused = requests.post(
        f"{world.url}/key/generate",
        data=raw,
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert refused.status_code == 400 and "surrogate" in refused.json()["error"]["message"]
    too_big = send(world, admin, "POST", "/key/generate", {"tpm_limit": 2**117}, status=422)
    assert too_big["error"]["param"] == "tpm_limit"
    past_32_bits = send(world, admin, "POST", "/key/generate", {"rpm_limit": 3_000_000_000}, status=400)
    assert past_32_bits["error"]["param"] == "rpm_limit"  # the key's columns are 32-bit
    paired = send(world, admin, "POST", "/key/generate", {"key_alias": "emoji \U0001f600 pair"})
    assert paired["key_alias"] == "emoji \U0001f600 pair"  # a whole pair is text like any other
