"""/api/usage as CSV (SPEC 6): text cells that a spreadsheet would run as a formula start with `'`;
the numbers Tollgate writes stay numbers. `tokens_unbilled` in JSON and CSV (issue 17)."""

from __future__ import annotations

import csv
import io

import pytest

from app.extensions import db
from app.keys.operations import create_key
from app.models.usage import UsageRecord
from tests.api.test_customers import api
from tests.factories import World, chat

# Customer ids that are formulas to a spreadsheet. Those with control characters cannot come in
# through the proxy (400), so their usage is written directly.
THROUGH_THE_PROXY = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)"]
WRITTEN_DIRECTLY = ["\tx", "\rx"]


@pytest.fixture
def admin(world: World) -> str:
    _, key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    return key


def record(world: World, customer_id: str | None, model: str = "gpt-test", unbilled: int = 0) -> None:
    customer = world.customer(customer_id) if customer_id else None
    db.session.add(
        UsageRecord(
            request_id=f"req_{customer_id!r}_{model}",
            project_id=world.project.id,
            customer_id=customer.id if customer else None,
            endpoint="chat/completions",
            model_requested=model,
            model_served=model,
            model_tier="standard",
            prompt_tokens=10,
            completion_tokens=5,
            total_tokens=15,
            tokens_charged=15 - unbilled,
            tokens_unbilled=unbilled,
            cost_nusd=1_234_567,
            status=200,
        )
    )
    world.commit()


def rows_of(text: str) -> dict[str, dict[str, str]]:
    return {row["group"]: row for row in csv.DictReader(io.StringIO(text, newline=""))}


def test_csv_cells_that_would_be_formulas_start_with_a_quote(world: World, admin: str):
    for customer_id in THROUGH_THE_PROXY:
        assert chat(world.url, world.key, customer_id).status_code == 200
    for customer_id in WRITTEN_DIRECTLY:
        world.give_customer(customer_id, 1000)
        record(world, customer_id, unbilled=7)
    chat(world.url, world.key, "plain")
    record(world, None, model="-cmd|' /C calc'!A0")

    as_json = api(world, admin, "GET", "/usage", params={"group_by": "customer"}).json()["data"]
    as_csv = api(world, admin, "GET", "/usage", params={"group_by": "customer", "format": "csv"})
    ids = THROUGH_THE_PROXY + WRITTEN_DIRECTLY
    cell_of = {None: "", "plain": "plain", **{customer_id: "'" + customer_id for customer_id in ids}}
    assert {row["group"] for row in as_json} == set(cell_of)  # JSON is data: verbatim
    cells = rows_of(as_csv.text)
    assert set(cells) == set(cell_of.values())
    for row in as_json:  # the numbers, spend_usd included, exactly as in JSON
        group = cell_of[row["group"]]
        assert cells[group] == {**{k: str(v) for k, v in row.items()}, "group": group}

    by_model = api(world, admin, "GET", "/usage", params={"group_by": "model", "format": "csv"})
    assert set(rows_of(by_model.text)) == {"gpt-test", "'-cmd|' /C calc'!A0"}
    by_day = rows_of(api(world, admin, "GET", "/usage", params={"group_by": "day", "format": "csv"}).text)
    [(day, row)] = by_day.items()
    assert len(day) == 10 and row["calls"] == str(len(ids) + 2)


def test_tokens_unbilled_is_reported_in_json_and_csv(world: World, admin: str):
    world.give_customer("leaky", 1000)
    record(world, "leaky", unbilled=7)
    chat(world.url, world.key, "paid")
    as_json = {
        r["group"]: r
        for r in api(world, admin, "GET", "/usage", params={"group_by": "customer"}).json()["data"]
    }
    assert (as_json["leaky"]["tokens_unbilled"], as_json["paid"]["tokens_unbilled"]) == (7, 0)
    as_csv = api(world, admin, "GET", "/usage", params={"group_by": "customer", "format": "csv"}).text
    assert as_csv.splitlines()[0].endswith(",spend_usd,tokens_unbilled")
    assert rows_of(as_csv)["leaky"]["tokens_unbilled"] == "7"
    by_tier = api(world, admin, "GET", "/usage", params={"group_by": "model_tier"}).json()["data"]
    assert [(r["group"], r["tokens_unbilled"]) for r in by_tier] == [("standard", 7)]
