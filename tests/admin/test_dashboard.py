"""The admin dashboard (issue 5, build 3 and acceptance 3): the SVG charts carry the seeded usage per
model tier and bucket, exactly; top customers, shedding and deployments are shown; the page costs the
same few statements whatever the amount of usage."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest
from markupsafe import escape
from sqlalchemy import event, select

from app.cli import add_admin
from app.dashboard import charts
from app.extensions import db
from app.formatting import usd
from app.models import UsageRecord
from app.models.catalog import Deployment, Model
from app.projects.operations import create_project
from tests.admin.test_sign_in_and_customers import PASSWORD, client_for, sign_in
from tests.factories import World

NOW = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"
_request_ids = itertools.count()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def record(project_id: int, when: datetime, tier: str, tokens: int, cost: int, customer=None, status=200):
    """One usage record's row, as settlement writes it."""
    return dict(
        request_id=f"dash-{next(_request_ids)}",
        project_id=project_id,
        customer_id=customer.id if customer is not None else None,
        endpoint="chat/completions",
        model_requested="gpt-test",
        model_served="gpt-test",
        model_tier=tier,
        prompt_tokens=tokens // 2,
        completion_tokens=tokens - tokens // 2,
        total_tokens=tokens,
        tokens_charged=tokens,
        cost_nusd=cost,
        status=status,
        stream=False,
        client_disconnected=False,
        overage=False,
        latency_ms=1,
        created_at=when,
    )


def seed(rows: list[dict]) -> None:
    db.session.execute(UsageRecord.__table__.insert(), rows)
    db.session.commit()


@pytest.fixture
def admin(app, world: World, monkeypatch):
    """A signed-in admin whose dashboard believes it is NOW."""
    monkeypatch.setattr("app.dashboard.views.now_utc", lambda: NOW)
    add_admin("owner@example.com", PASSWORD)
    db.session.commit()
    client = client_for(app)
    sign_in(client)
    yield client
    app.extensions["tollgate.signin_throttle"].__init__(None)  # a fresh window for the next test


def page(client, path: str = "/dashboard") -> str:
    resp = client.get(path)
    assert resp.status_code == 200, path
    return resp.data.decode()


def chart(html: str, key: str) -> dict[str, dict[str, int]]:
    """A chart's series read back from the page: model tier -> bucket -> data-value."""
    svg = re.search(rf'<svg [^>]*id="chart-{key}".*?</svg>', html, re.S)
    assert svg, f"no {key} chart"
    root = ElementTree.fromstring(svg.group(0))
    return {
        g.get("data-model-tier"): {
            r.get("data-bucket"): int(r.get("data-value")) for r in g.iter(f"{SVG}rect")
        }
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "series"
    }


def nonzero(series: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {tier: {b: v for b, v in values.items() if v} for tier, values in series.items()}


@pytest.fixture
def seeded(world: World):
    """Usage across model tiers, days and hours, and records each filter must leave out."""
    pid = world.project.id
    acme, globex = world.give_customer("acme", 0), world.give_customer("globex", 0)
    other = create_project(db.session, "other", "Other")
    db.session.commit()
    seed(
        [
            record(pid, at("2026-11-20T14:05:00"), "standard", 100, 1_000, acme),
            record(pid, at("2026-11-20T09:00:00"), "standard", 250, 2_500, globex),
            record(pid, at("2026-11-20T13:59:59"), "premium", 1_000, 3_000_000_000, acme),
            record(pid, at("2026-11-18T00:00:00"), "premium", 40, 7),  # project-level usage: no customer
            record(pid, at("2026-10-22T00:00:00"), "reasoning", 5, 11, globex),  # the 30 days' first instant
            record(pid, at("2026-11-19T14:59:59"), "standard", 30, 300, acme),  # just before the 24 hours
            record(
                pid, at("2026-11-19T15:00:00"), "standard", 70, 700, globex
            ),  # the 24 hours' first instant
            # Left out everywhere:
            record(pid, at("2026-10-21T23:59:59.999999"), "standard", 9_001, 9_001, acme),  # before the range
            record(pid, at("2026-11-21T00:00:00"), "premium", 9_002, 9_002, acme),  # after it
            record(pid, at("2026-11-20T10:00:00"), "standard", 9_003, 9_003, acme, status=502),  # failed
            record(other.id, at("2026-11-20T10:00:00"), "standard", 9_004, 9_004),  # another project
        ]
    )
    return world


def test_thirty_days_of_calls_tokens_and_spend_per_model_tier_and_day(admin, seeded):
    html = page(admin)
    calls, tokens, spend = chart(html, "calls"), chart(html, "tokens"), chart(html, "spend")
    days = [(at("2026-10-22T00:00:00") + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(30)]
    for series in (calls, tokens, spend):
        assert list(series) == ["standard", "premium", "reasoning"]  # MODEL_TIERS order, only tiers used
        assert all(list(values) == days for values in series.values())  # every day, oldest first
    assert nonzero(calls) == {
        "standard": {"2026-11-19": 2, "2026-11-20": 2},
        "premium": {"2026-11-18": 1, "2026-11-20": 1},
        "reasoning": {"2026-10-22": 1},
    }
    assert nonzero(tokens) == {
        "standard": {"2026-11-19": 100, "2026-11-20": 350},
        "premium": {"2026-11-18": 40, "2026-11-20": 1_000},
        "reasoning": {"2026-10-22": 5},
    }
    assert nonzero(spend) == {
        "standard": {"2026-11-19": 1_000, "2026-11-20": 3_500},
        "premium": {"2026-11-18": 7, "2026-11-20": 3_000_000_000},
        "reasoning": {"2026-10-22": 11},
    }
    # Spend is shown as dollars: in the bar's tooltip and in the totals table.
    assert '<rect data-bucket="2026-11-20" data-value="3000000000"' in html
    assert "premium · 2026-11-20: $3.00</title>" in html
    totals = re.search(r'<tr data-model-tier="premium">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r'<td class="num"[^>]*>([^<]+)</td>', totals) == ["2", "1,040", "$3.00"]


def test_twenty_four_hours_per_model_tier_and_hour(admin, seeded):
    html = page(admin, "/dashboard?range=24h")
    assert "aria-current=page>Last 24 hours</a>" in html
    tokens, spend = chart(html, "tokens"), chart(html, "spend")
    hours = [(at("2026-11-19T15:00:00") + timedelta(hours=i)).strftime("%Y-%m-%dT%H:00Z") for i in range(24)]
    assert list(tokens) == ["standard", "premium"]  # the reasoning call is 29 days old
    assert list(tokens["standard"]) == hours
    assert nonzero(chart(html, "calls")) == {
        "standard": {"2026-11-19T15:00Z": 1, "2026-11-20T09:00Z": 1, "2026-11-20T14:00Z": 1},
        "premium": {"2026-11-20T13:00Z": 1},
    }
    assert nonzero(tokens) == {
        "standard": {"2026-11-19T15:00Z": 70, "2026-11-20T09:00Z": 250, "2026-11-20T14:00Z": 100},
        "premium": {"2026-11-20T13:00Z": 1_000},
    }
    assert nonzero(spend) == {
        "standard": {"2026-11-19T15:00Z": 700, "2026-11-20T09:00Z": 2_500, "2026-11-20T14:00Z": 1_000},
        "premium": {"2026-11-20T13:00Z": 3_000_000_000},
    }


def test_no_usage_yet_shows_an_empty_state(admin, world: World):
    seed([record(world.project.id, NOW - timedelta(days=40), "standard", 10, 10)])  # too old to count
    html = page(admin)
    assert "No usage in the last 30 days" in html
    assert "<svg" not in html and 'class="series"' not in html
    assert "No customer has made a successful call" in html
    assert "No usage in the last 24 hours" in page(admin, "/dashboard?range=24h")
    assert "No usage in the last 30 days" in page(admin, "/dashboard?range=bogus")  # the default range


def test_top_customers_by_spend_in_the_range(admin, world: World):
    pid = world.project.id
    rows = []
    for i in range(1, 13):
        rows.append(
            record(
                pid, NOW - timedelta(days=i), "standard", i, i * 1_000, world.give_customer(f"c{i:02d}", 0)
            )
        )
    # Equal spend: the lower customer_id comes first, though "tie-b" has the lower row id.
    first, second = world.give_customer("tie-b", 0), world.give_customer("tie-a", 0)
    rows += [record(pid, NOW, "premium", 1, 20_000, first), record(pid, NOW, "premium", 1, 20_000, second)]
    old, failed = world.give_customer("old-whale", 0), world.customer("c01")
    rows.append(record(pid, NOW - timedelta(days=31), "premium", 1, 10**12, old))  # outside the 30 days
    rows.append(record(pid, NOW, "premium", 1, 10**12, failed, status=500))  # a failed call costs nothing
    seed(rows)
    html = page(admin)
    section = re.search(r'<section class="card" id="top-customers".*?</section>', html, re.S).group(0)
    shown = re.findall(r'href="/customers/([^"]+)"', section)
    assert shown == ["tie-a", "tie-b", "c12", "c11", "c10", "c09", "c08", "c07", "c06", "c05"]
    assert f'<td class="num" data-label="Spend">{escape(usd(12_000))}</td>' in section


def test_shedding_level_is_shown_as_set(admin, world: World):
    before = page(admin)
    assert '<dd id="shedding-level"><strong>off</strong></dd>' in before
    assert '<dd id="auto-shedding">off</dd>' in before and '<dd id="capacity">not set</dd>' in before
    world.set(shedding_level="middle", auto_shedding=True, capacity=1200)
    after = page(admin)
    assert '<dd id="shedding-level"><strong>middle</strong></dd>' in after
    assert '<dd id="auto-shedding">on</dd>' in after
    assert '<dd id="capacity">1,200 calls in flight</dd>' in after


def deployment_rows(html: str) -> list[tuple[str, list[str]]]:
    section = re.search(r'<section id="deployments".*?</section>', html, re.S).group(0)
    return [
        (
            health,
            [
                " ".join(re.sub(r"<[^>]+>", " ", cell).split())
                for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
            ],
        )
        for health, row in re.findall(r'<tr data-health="(\w+)">(.*?)</tr>', section, re.S)
    ]


def test_deployments_with_their_circuit_breakers(app, admin, world: World, monkeypatch):
    world.add_model(
        "gpt-eu", [{"provider": "mock", "model": "mock-eu", "region": "eu"}], model_tier="premium"
    )
    eu = db.session.scalar(select(Deployment).join(Model).where(Model.name == "gpt-eu"))
    eu.enabled = False
    world.commit()
    test_id = db.session.scalar(select(Deployment.id).join(Model).where(Model.name == "gpt-test"))
    health = app.extensions["tollgate.gateway"].health
    for _ in range(3):
        health.failed(test_id)
    assert deployment_rows(page(admin)) == [
        ("healthy", ["gpt-eu premium", "mock", "eu", "mock-eu", "no", "healthy", "0"]),
        ("resting", ["gpt-test standard", "openai", "us", "fake-model", "yes", "failing · resting", "0"]),
    ]
    cooled = health.clock() + 60
    monkeypatch.setattr(health, "clock", lambda: cooled)  # past the cool-down: the next call probes
    assert [health for health, _ in deployment_rows(page(admin))] == ["healthy", "probing"]


def test_statements_do_not_grow_with_usage(admin, world: World):
    pid = world.project.id
    customers = [world.give_customer(f"k{i}", 0) for i in range(12)]
    seed([record(pid, NOW, "standard", 10, 10, customers[0])])

    def statements(path: str) -> int:
        counted: list[str] = []
        listener = lambda *args: counted.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            page(admin, path)
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        return len(counted)

    small = {path: statements(path) for path in ("/dashboard", "/dashboard?range=24h")}
    seed(
        [
            record(pid, NOW - timedelta(hours=i % 700), tier, 7, 13, customers[i % 12])
            for i, tier in zip(
                range(3_000), itertools.cycle(("standard", "premium", "reasoning")), strict=False
            )
        ]
    )
    large = {path: statements(path) for path in small}
    assert large == small, (small, large)
    assert max(large.values()) <= 8, large  # the admin, the project, and one statement per figure
    assert sum(chart(page(admin), "calls")["premium"].values()) == 1_000  # the bulk did reach the charts


def test_stacked_bars_stack_scale_and_escape():
    chart_ = charts.Chart("t", "Tokens", "tokens", str)
    svg = charts.stacked_bars(
        chart_,
        ["d1", "d2"],
        ["1", "2"],
        [charts.Series("standard", [30, 0]), charts.Series('we<ird>&"', [10, 5])],
    )
    root = ElementTree.fromstring(str(svg))
    standard, weird = [g for g in root.iter(f"{SVG}g") if g.get("class") == "series"]
    assert weird.get("data-model-tier") == 'we<ird>&"'  # escaped in the markup, intact when parsed
    low, high = standard.find(f"{SVG}rect"), weird.find(f"{SVG}rect")
    # Peak 40 in 4 steps of 10: the stack's top touches the plot's top; the second series sits on the first.
    assert float(high.get("y")) == charts.TOP
    assert float(high.get("y")) + float(high.get("height")) == pytest.approx(float(low.get("y")), abs=0.11)
    assert float(low.get("height")) == pytest.approx(charts.PLOT_H * 30 / 40, abs=0.11)
    assert [t.text for t in root.iter(f"{SVG}text")][:5] == ["0", "10", "20", "30", "40"]
    assert high.find(f"{SVG}title").text == 'we<ird>&" · d1: 10 tokens'


@pytest.mark.parametrize(
    ("peak", "step"), [(0, 1), (4, 1), (5, 2), (8, 2), (9, 5), (41, 20), (3_000_000_007, 1_000_000_000)]
)
def test_axis_steps_are_round(peak, step):
    assert charts.nice_step(peak) == step
