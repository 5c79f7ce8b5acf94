"""GET /api/customers/{id}/refusals (SPEC 5.5, 6): each hour's count per code carries its latest
refusal, `last_at`, `message` and `model` (issue 16, item 2), written by the counter's own flush."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event

from app.db import iso, now_utc
from app.extensions import db
from app.keys.operations import create_key
from app.proxy.refusals import RefusalCounter
from tests.api.test_customers import api
from tests.factories import World


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    return key


def noted(
    world: World, at, code: str, message: str, model: object = "gpt-test", customer_id: str = "c"
) -> None:
    """One refusal, counted by a process's counter of its own and written at once."""
    counter = RefusalCounter(db.engine, clock=lambda: at, every_s=3600)
    counter.note(world.project.id, customer_id, code, message, model)
    counter.flush()


def test_each_hour_and_code_carries_its_latest_refusal(world: World, admin: str):
    world.give_customer("c", 10)
    hour = now_utc().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    counter = RefusalCounter(db.engine, every_s=3600)
    moments = {"first": hour + timedelta(minutes=10), "latest": hour + timedelta(minutes=20)}
    for message, at in moments.items():
        counter.clock = lambda at=at: at
        counter.note(world.project.id, "c", "insufficient_tokens", f"No tokens: {message}", "gpt-test")
    counter.clock = lambda: hour - timedelta(minutes=30)
    counter.note(world.project.id, "c", "customer_blocked", "Customer c is blocked.", {"not": "a name"})
    written: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            written.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert counter.flush() == 2  # the counts with their examples, and the customers' last refusal
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(written) == 2
    body = api(world, admin, "GET", "/customers/c/refusals").json()
    assert body["hours"] == [
        {
            "hour": iso(hour),
            "code": "insufficient_tokens",
            "count": 2,
            "last_at": iso(moments["latest"]),
            "message": "No tokens: latest",
            "model": "gpt-test",
        },
        {
            "hour": iso(hour - timedelta(hours=1)),
            "code": "customer_blocked",
            "count": 1,
            "last_at": iso(hour - timedelta(minutes=30)),
            "message": "Customer c is blocked.",
            "model": None,  # a model that was no string is not shown
        },
    ]
    assert body["last"]["at"] == iso(moments["latest"]) and body["last"]["message"] == "No tokens: latest"


def test_a_later_flush_of_an_older_refusal_adds_its_count_but_keeps_the_newer_example(
    world: World, admin: str
):
    world.give_customer("c", 10)
    hour = now_utc().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    noted(world, hour + timedelta(minutes=40), "load_shed", "newer, from worker 1")
    noted(world, hour + timedelta(minutes=5), "load_shed", "older, from worker 2", model="other-model")
    [row] = api(world, admin, "GET", "/customers/c/refusals").json()["hours"]
    assert (row["count"], row["message"], row["model"], row["last_at"]) == (
        2,
        "newer, from worker 1",
        "gpt-test",
        iso(hour + timedelta(minutes=40)),
    )
    noted(world, hour + timedelta(minutes=50), "load_shed", "newest", model="other-model")
    [row] = api(world, admin, "GET", "/customers/c/refusals").json()["hours"]
    assert (row["count"], row["message"], row["model"]) == (3, "newest", "other-model")


def test_the_openapi_document_names_the_new_fields(app):
    spec = app.test_client().get("/api/openapi.json").get_json()
    hour = spec["components"]["schemas"]["RefusalHour"]
    assert {"hour", "code", "count", "last_at", "message", "model"} <= set(hour["properties"])
    assert set(hour["required"]) >= {"last_at", "message", "model"}
