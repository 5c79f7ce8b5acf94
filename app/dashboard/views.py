"""The admin's dashboard (SPEC 10): headline numbers with their trends, calls and refusals, tokens
and spend over time, top customers, shedding, deployments. A handful of statements whatever the
amount of usage."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from flask_login import login_required
from markupsafe import Markup

from app.customers.listing import current_project
from app.dashboard import figures, headlines
from app.dashboard.charts import Chart, Series, money_labels, stacked_bars
from app.db import now_utc
from app.extensions import db
from app.formatting import tokens, usd
from app.metering.pricing import NANO

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

CENT_NUSD = NANO // 100  # an axis of no spend at all still reads $0 to $0.01
CHARTS = (
    ("calls", Chart("calls", "Calls by model tier", "calls", lambda n: f"{n:,}")),
    ("tokens", Chart("tokens", "Tokens by model tier", "tokens", tokens)),
    ("spend_nusd", Chart("spend", "Spend by model tier", "", usd, money_labels, least=CENT_NUSD)),
)
REFUSALS = Chart("refusals", "Refused calls by code", "refused", lambda n: f"{n:,}", dimension="code")


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here needs a signed-in admin."""


def _charts(usage: figures.Usage) -> dict[str, Markup]:
    return {
        chart.key: stacked_bars(
            chart,
            usage.buckets,
            usage.ticks,
            [Series(t.model_tier, getattr(t, measure)) for t in usage.tiers],
        )
        for measure, chart in CHARTS
    }


def _refusals_chart(usage: figures.Usage, refused: figures.Refusals) -> Markup:
    return stacked_bars(
        REFUSALS,
        usage.buckets,
        usage.ticks,
        [Series(c.code, c.counts) for c in refused.codes],
    )


@bp.route("")
def index():
    project = current_project(db.session)
    span, now = figures.span_for(request.args.get("range")), now_utc()
    usage = figures.usage(db.session, project.id, span, now)
    refused = figures.refusals(db.session, project.id, span, now)
    health = current_app.extensions["tollgate.gateway"].health
    return render_template(
        "dashboard/index.html",
        project=project,
        span=span,
        spans=figures.SPANS.values(),
        totals=headlines.usage_totals(db.session, project.id, span, now),
        counts=headlines.customer_counts(db.session, project, span, now),
        trend=headlines.trend,
        usage=usage,
        refused=refused,
        refused_figure=headlines.Compared(refused.total, refused.previous),
        charts={} if usage.empty else _charts(usage),
        refusals_chart=None if refused.empty else _refusals_chart(usage, refused),
        top=figures.top_customers(db.session, project.id, span, now),
        deployments=figures.deployments(db.session, project.id, health),
        health_shared=health.is_shared,
        health_configured=health.shared is not None,
    )
