"""The admin's dashboard (SPEC 10): calls, tokens and spend by model tier, top customers, shedding,
deployments. A handful of statements whatever the amount of usage."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from flask_login import login_required
from markupsafe import Markup

from app.customers.listing import current_project
from app.dashboard import figures
from app.dashboard.charts import Chart, Series, stacked_bars
from app.db import now_utc
from app.extensions import db
from app.formatting import tokens, usd

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

CHARTS = (
    ("calls", Chart("calls", "Calls by model tier", "calls", lambda n: f"{n:,}")),
    ("tokens", Chart("tokens", "Tokens by model tier", "tokens", tokens)),
    ("spend_nusd", Chart("spend", "Spend by model tier", "", usd)),
)


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


@bp.route("")
def index():
    project = current_project(db.session)
    span, now = figures.span_for(request.args.get("range")), now_utc()
    usage = figures.usage(db.session, project.id, span, now)
    health = current_app.extensions["tollgate.gateway"].health
    return render_template(
        "dashboard/index.html",
        project=project,
        span=span,
        spans=figures.SPANS.values(),
        usage=usage,
        charts={} if usage.empty else _charts(usage),
        top=figures.top_customers(db.session, project.id, span, now),
        deployments=figures.deployments(db.session, project.id, health),
        health_shared=health.is_shared,
        health_configured=health.shared is not None,
    )
