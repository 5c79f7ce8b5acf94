"""The admin dashboard (issue 5, build 3 and acceptance 3): the SVG charts carry the seeded usage per
model tier and bucket, exactly; top customers, shedding and deployments are shown; the page costs the
same few statements whatever the amount of usage."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from xml.etree import ElementTree

import pytest
from markupsafe import escape
from sqlalchemy import event, select

from app.cli import add_admin
from app.dashboard import charts
from app.extensions import db
from app.formatting import usd
from app.models import RefusalCount, UsageRecord
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


def svg_of(html: str, key: str) -> ElementTree.Element:
    svg = re.search(rf'<svg [^>]*id="chart-{key}".*?</svg>', html, re.S)
    assert svg, f"no {key} chart"
    return ElementTree.fromstring(svg.group(0))


def chart(html: str, key: str, dimension: str = "model-tier") -> dict[str, dict[str, int]]:
    """A chart's series read back from the page: model tier (or code) -> bucket -> data-value."""
    root = svg_of(html, key)
    return {
        g.get(f"data-{dimension}"): {
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
    hours = [NOW.replace(minute=0) - timedelta(hours=h) for h in range(150)]
    db.session.execute(
        RefusalCount.__table__.insert(),
        [
            dict(customer_id=c.id, hour=h, code="insufficient_tokens", count=3)
            for c in customers
            for h in hours
        ],
    )
    db.session.commit()
    large = {path: statements(path) for path in small}
    assert large == small, (small, large)
    # The admin, the project, the project switcher, and one statement per figure: usage by bucket,
    # refusals by bucket, usage totals of both periods, customer counts, top customers, deployments.
    assert max(large.values()) <= 9, large
    assert sum(chart(page(admin), "calls")["premium"].values()) == 1_000  # the bulk did reach the charts


def test_stacked_bars_stack_scale_and_escape():
    chart_ = charts.Chart("t", "Tokens", "tokens", str)
    markup = str(
        charts.stacked_bars(
            chart_,
            ["d1", "d2"],
            ["1", "2"],
            [charts.Series("standard", [30, 0]), charts.Series('we<ird>&"', [10, 5])],
        )
    )
    root = svg_of(markup, "t")
    standard, weird = [g for g in root.iter(f"{SVG}g") if g.get("class") == "series"]
    assert weird.get("data-model-tier") == 'we<ird>&"'  # escaped in the markup, intact when parsed
    low, high = standard.find(f"{SVG}rect"), weird.find(f"{SVG}rect")
    # Peak 40 in 4 steps of 10: the stack's top touches the plot's top; the second series sits on the first.
    assert float(high.get("y")) == charts.TOP
    assert float(high.get("y")) + float(high.get("height")) == pytest.approx(float(low.get("y")), abs=0.11)
    assert float(low.get("height")) == pytest.approx(charts.PLOT_H * 30 / 40, abs=0.11)
    # Across the plot's width in percent, whatever that width: two buckets, each bar centred in its half.
    assert (low.get("x"), low.get("width")) == ("7.000%", "36.000%")
    assert weird.findall(f"{SVG}rect")[1].get("x") == "57.000%"
    value_axis = ElementTree.fromstring(re.search(r'<svg class="chart-axis".*?</svg>', markup, re.S).group(0))
    assert [t.text for t in value_axis.iter(f"{SVG}text")] == ["0", "10", "20", "30", "40"]
    assert high.find(f"{SVG}title").text == 'we<ird>&" · d1: 10 tokens'
    assert "we&lt;ird&gt;&amp;&#34;</li>" in markup  # the legend escapes too


# --- headline numbers (issue 16, build 4) ------------------------------------------------------------
MILLI = 1_000_000  # $0.001 in nano-USD


def headline(html: str, key: str) -> tuple[str, str, str]:
    """A headline card as (its link, its words, the tone of its trend or "")."""
    card = re.search(rf'<a class="card headline" id="headline-{key}" href="([^"]*)">(.*?)</a>', html, re.S)
    assert card, f"no {key} headline"
    words = unescape(" ".join(re.sub(r"<[^>]+>", " ", card.group(2)).split()))
    tone = re.search(r'class="trend (\w+)"', card.group(2))
    return card.group(1).replace("&amp;", "&"), words, tone.group(1) if tone else ""


def refusal_counts(*rows: tuple) -> None:
    """(customer, hour as text, code, count) rows, as the proxy's refusal counter writes them."""
    db.session.execute(
        RefusalCount.__table__.insert(),
        [dict(customer_id=c.id, hour=at(hour), code=code, count=n) for c, hour, code, n in rows],
    )
    db.session.commit()


@pytest.fixture
def compared(world: World):
    """The last 24 hours (from 2026-11-19 15:00) against the 23.5 hours before them, up to 14:30 the
    day before: the previous period is exactly as long as the part of the range gone by."""
    pid = world.project.id
    acme, globex = world.give_customer("acme", 0), world.give_customer("globex", 0)
    other = create_project(db.session, "other", "Other")
    db.session.commit()
    seed(
        [
            # The last 24 hours: 4 calls, $0.36, 2 customers (a project's own call has none).
            record(pid, at("2026-11-19T15:00:00"), "standard", 10, 100 * MILLI, acme),
            record(pid, at("2026-11-20T14:29:00"), "premium", 10, 200 * MILLI, acme),
            record(pid, at("2026-11-20T09:00:00"), "standard", 10, 50 * MILLI, globex),
            record(pid, at("2026-11-20T10:00:00"), "standard", 10, 10 * MILLI),
            record(pid, at("2026-11-20T11:00:00"), "standard", 10, 900 * MILLI, globex, status=429),  # failed
            # The previous period: 1 call, $0.20, 1 customer.
            record(pid, at("2026-11-18T15:00:00"), "standard", 10, 200 * MILLI, acme),  # its first instant
            record(pid, at("2026-11-19T14:30:00"), "standard", 10, 700 * MILLI, globex),  # its end: left out
            record(pid, at("2026-11-18T14:59:59"), "standard", 10, 700 * MILLI, globex),  # before it
            record(other.id, at("2026-11-19T10:00:00"), "standard", 10, 700 * MILLI),  # another project
        ]
    )
    intruder = create_customer_in(other, "intruder")
    refusal_counts(
        # The last 24 hours: 6 refusals of three codes.
        (acme, "2026-11-20T14:00:00", "insufficient_tokens", 3),
        (globex, "2026-11-19T15:00:00", "usage_limit_reached", 2),
        (globex, "2026-11-20T09:00:00", "customer_blocked", 1),
        # The previous period: 5. An hour belongs to the period it starts in: 14:00 is before 14:30.
        (acme, "2026-11-18T15:00:00", "insufficient_tokens", 4),
        (acme, "2026-11-19T14:00:00", "rate_limit_exceeded", 1),
        (acme, "2026-11-18T14:00:00", "insufficient_tokens", 50),  # before it
        (intruder, "2026-11-20T14:00:00", "insufficient_tokens", 70),  # another project's customer
    )
    return world


def create_customer_in(project, external_id: str):
    from app.models import Customer

    customer = Customer(project_id=project.id, external_id=external_id, name=external_id)
    db.session.add(customer)
    db.session.commit()
    return customer


def test_headlines_of_the_range_against_the_previous_period(admin, compared):
    html = page(admin, "/dashboard?range=24h")
    assert headline(html, "calls") == ("#usage-calls", "Calls 4 ▲ up 300% vs previous 24 h", "good")
    assert headline(html, "spend") == ("#usage-spend", "Spend $0.3600 ▲ up 80% vs previous 24 h", "good")
    assert headline(html, "active") == (
        "#top-customers",
        "Active customers 2 ▲ up 100% vs previous 24 h",
        "good",
    )
    # More refusals is bad news: red.
    assert headline(html, "refusals") == (
        "/customers?refused=1",
        "Refusals 6 ▲ up 20% vs previous 24 h",
        "bad",
    )
    # The calls headline is the calls chart's total.
    assert sum(sum(v.values()) for v in chart(html, "calls").values()) == 4
    assert 'id="usage-calls"' in html and 'id="usage-spend"' in html and 'id="top-customers"' in html


def test_refusals_by_code_beside_calls_with_the_same_buckets(admin, compared):
    html = page(admin, "/dashboard?range=24h")
    refused = chart(html, "refusals", "code")
    assert list(refused) == ["insufficient_tokens", "usage_limit_reached", "customer_blocked"]  # SPEC order
    assert list(refused["customer_blocked"]) == list(chart(html, "calls")["standard"])  # the same buckets
    assert nonzero(refused) == {
        "insufficient_tokens": {"2026-11-20T14:00Z": 3},
        "usage_limit_reached": {"2026-11-19T15:00Z": 2},
        "customer_blocked": {"2026-11-20T09:00Z": 1},
    }
    assert "insufficient tokens · 2026-11-20T14:00Z: 3 refused</title>" in html
    legend = re.search(r'<figure class="card dash-chart" id="refusals">.*?</figure>', html, re.S).group(0)
    assert re.findall(r"</svg>([a-z ]+)</li>", legend) == [
        "insufficient tokens",
        "usage limit reached",
        "customer blocked",
    ]
    # Calls and refusals share a row of the page, the first under the headlines.
    first = html[
        html.index('aria-label="Calls and refusals over time"') : html.index('aria-label="Tokens and spend')
    ]
    assert 'id="chart-calls"' in first and 'id="chart-refusals"' in first


@pytest.mark.parametrize(
    ("current", "previous", "up_is_good", "words"),
    [
        (4, 1, True, ("good", "▲", "up", "300%", "vs previous 24 h")),
        (1, 3, True, ("bad", "▼", "down", "67%", "vs previous 24 h")),  # 66.7 rounds up
        (1, 8, True, ("bad", "▼", "down", "88%", "vs previous 24 h")),  # 87.5 rounds half up
        (1_000, 999, True, ("good", "▲", "up", "<1%", "vs previous 24 h")),  # never "0%" for a change
        (3, 0, True, ("good", "▲", "up", "new", "none in the previous 24 h")),
        (3, 0, False, ("bad", "▲", "up", "new", "none in the previous 24 h")),
        (2, 4, False, ("good", "▼", "down", "50%", "vs previous 24 h")),  # fewer refusals: good news
        (5, 5, True, ("flat", "", "", "no change", "vs previous 24 h")),
        (0, 0, True, ("flat", "", "", "", "none in the previous 24 h either")),  # no arrow, no percent
    ],
)
def test_trend_words(current, previous, up_is_good, words):
    from app.dashboard.figures import SPANS
    from app.dashboard.headlines import Compared, trend

    t = trend(Compared(current, previous), SPANS["24h"], up_is_good)
    *start, against = words
    assert (t.tone, t.arrow, t.direction, t.change, t.against) == (*start, against.replace("24 h", "24\xa0h"))


def test_headlines_of_a_quiet_project_say_none_without_arrows(admin, world: World):
    html = page(admin, "/dashboard?range=24h")
    # No chart to link to: the empty state says why.
    assert headline(html, "calls") == ("#no-usage", "Calls 0 none in the previous 24 h either", "")
    assert headline(html, "spend") == ("#no-usage", "Spend $0.00 none in the previous 24 h either", "")
    assert headline(html, "refusals")[1] == "Refusals 0 none in the previous 24 h either"
    assert "▲" not in html and "▼" not in html
    assert "No refused calls in the last 24 hours" in html and "<svg" not in html


def test_a_first_call_and_a_first_refusal_are_new(admin, world: World):
    acme = world.give_customer("acme", 0)
    seed([record(world.project.id, at("2026-11-20T12:00:00"), "standard", 10, 5 * MILLI, acme)])
    refusal_counts((acme, "2026-11-20T13:00:00", "insufficient_tokens", 2))
    html = page(admin, "/dashboard?range=24h")
    assert headline(html, "calls") == ("#usage-calls", "Calls 1 ▲ up new none in the previous 24 h", "good")
    assert headline(html, "active")[1] == "Active customers 1 ▲ up new none in the previous 24 h"
    assert headline(html, "refusals")[1:] == ("Refusals 2 ▲ up new none in the previous 24 h", "bad")


def test_refused_calls_are_charted_before_any_call_is_served(admin, world: World):
    """A 0-token project's first customer: refused, awaiting approval, nothing served yet."""
    newcomer = world.give_customer("newcomer", 0)
    refusal_counts((newcomer, "2026-11-20T14:00:00", "insufficient_tokens", 1))
    html = page(admin)
    assert "No usage in the last 30 days" in html
    assert nonzero(chart(html, "refusals", "code")) == {"insufficient_tokens": {"2026-11-20": 1}}
    assert headline(html, "awaiting") == (
        "/customers?awaiting=1",
        "Awaiting approval 1 none new in the last 30 days",  # created now, after the frozen clock
        "",
    )


def test_awaiting_approval_and_low_balance_now_and_new_in_the_range(admin, world: World):
    from app.db import now_utc
    from app.events import recorder

    def customer(name, tokens, created):
        return world.give_customer(name, tokens, created_at=at(created))

    html = page(admin, "/dashboard?range=24h")
    assert headline(html, "low") == (
        "/settings#low_balance_tokens",
        "Low balance Not set Set a low-balance threshold in Settings",
        "",
    )
    world.set(low_balance_tokens=500)
    customer("waiting-new", 0, "2026-11-20T10:00:00")  # awaiting, created in the range; low (0)
    customer("waiting-old", 0, "2026-11-10T10:00:00")  # awaiting since before it; low
    customer("paid", 10_000, "2026-11-20T10:00:00")  # credited: neither
    ran_low = customer("ran-low", 100, "2026-11-01T00:00:00")
    was_low = customer("was-low", 200, "2026-11-01T00:00:00")
    recovered = customer("recovered", 9_000, "2026-11-01T00:00:00")
    for who, when in (
        (ran_low, "2026-11-20T12:00:00"),
        (was_low, "2026-11-10T12:00:00"),
        (recovered, "2026-11-20T12:00:00"),
    ):
        recorder.record(
            db.session.connection(),
            project_id=world.project.id,
            type="tokens.low",
            now=at(when),
            customer_pk=who.id,
            customer_external_id=who.external_id,
            data={},
        )
    other = create_project(db.session, "other", "Other")
    db.session.commit()
    create_customer_in(other, "elsewhere")  # awaiting and at 0, in another project
    assert now_utc() > NOW  # give_customer's own grant entries are dated now: after the range
    html = page(admin, "/dashboard?range=24h")
    assert headline(html, "awaiting") == (
        "/customers?awaiting=1",
        "Awaiting approval 2 1 new in the last 24 hours",
        "",
    )
    assert headline(html, "low") == (
        "/customers?low=1",
        "Low balance 4 under 500 tokens · 1 new in the last 24 hours",
        "",
    )
    assert headline(page(admin), "awaiting")[1] == "Awaiting approval 2 2 new in the last 30 days"


def test_the_7_and_30_days_have_refusal_trends_against_their_previous_periods(admin, world: World):
    """Counts are kept past the 7 days a customer's page shows: the scheduler's retention leaves the
    30 days' previous period alone, and both ranges compare with theirs, to the hour."""
    from app.customers.refusals import forget_old_refusals

    acme = world.give_customer("acme", 0)
    refusal_counts(
        (acme, "2026-11-20T14:00:00", "load_shed", 2),  # in both ranges
        (acme, "2026-11-14T00:00:00", "rate_limit_exceeded", 1),  # the 7 days' first hour
        (acme, "2026-11-13T15:00:00", "rate_limit_exceeded", 64),  # after the 7 days' previous period
        (acme, "2026-11-13T14:00:00", "rate_limit_exceeded", 4),  # its last hour (it ends at 14:30)
        (acme, "2026-11-07T00:00:00", "rate_limit_exceeded", 8),  # its first hour
        (acme, "2026-11-06T23:00:00", "rate_limit_exceeded", 16),  # before it
        (acme, "2026-10-21T15:00:00", "insufficient_tokens", 128),  # after the 30 days' previous period
        (acme, "2026-10-11T14:00:00", "insufficient_tokens", 32),  # 40 days ago: in it
        (acme, "2026-09-22T00:00:00", "insufficient_tokens", 256),  # its first hour, 59 days ago
        (acme, "2026-09-21T23:00:00", "insufficient_tokens", 512),  # before it
        (acme, "2026-09-20T12:00:00", "insufficient_tokens", 1024),  # older than the retention
    )
    assert forget_old_refusals(db.engine, NOW) == 1
    week = page(admin, "/dashboard?range=7d")
    # 3 against 12: fewer refusals is good news.
    assert headline(week, "refusals") == (
        "#refusals",  # the customers list's refused filter is the last 24 h: the week's chart instead
        "Refusals 3 ▼ down 75% vs previous 7 days",
        "good",
    )
    month = page(admin, "/dashboard?range=30d")
    # 95 against 288 (32 + 256).
    assert headline(month, "refusals")[1:] == ("Refusals 95 ▼ down 67% vs previous 30 days", "good")
    assert nonzero(chart(month, "refusals", "code")) == {
        "rate_limit_exceeded": {"2026-11-06": 16, "2026-11-07": 8, "2026-11-13": 68, "2026-11-14": 1},
        "load_shed": {"2026-11-20": 2},
    }
    assert "not kept" not in month and 'class="missing"' not in month


@pytest.mark.parametrize("time_of_day", ["00:00:00", "14:30:00", "23:59:59.999999"])
def test_refusal_counts_are_kept_for_every_range_and_its_previous_period(time_of_day):
    """The retention (customers.refusals, which cannot import the dashboard) covers each range."""
    from app.customers.refusals import KEPT, WINDOW
    from app.dashboard.figures import SPANS

    now = at(f"2026-11-20T{time_of_day}")
    forgotten_before = now - KEPT - timedelta(hours=1)  # as forget_old_refusals deletes
    for span in SPANS.values():
        assert span.previous(now)[0] >= forgotten_before, span.key
    assert KEPT > WINDOW
