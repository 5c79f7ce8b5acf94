"""Project settings in the admin: defaults for new customers, shedding, capacity (SPEC 10)."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import login_required
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from app.auth import owner_required
from app.customers.listing import current_project
from app.customers.views import known_regions
from app.db import now_utc, session_writes
from app.extensions import db
from app.models.tier import UsageTier
from app.proxy import levels
from app.settings.forms import SettingsForm
from app.settings.operations import apply_settings

bp = Blueprint("settings", __name__, url_prefix="/settings")


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here needs a signed-in admin."""


def _form(formdata=None) -> SettingsForm:
    project = current_project(db.session)
    values = None if formdata else project
    form = SettingsForm(
        formdata, obj=values, known_regions=known_regions(project), default_tier=project.default_tier_id
    )
    if formdata is None:
        form.default_allowed_regions.data = ", ".join(project.default_allowed_regions or [])
        form.portal_frame_origins.data = "\n".join(project.portal_frame_origins or [])
    form.default_tier.choices = [
        SelectChoice(str(t.id), f"{t.name} · {t.key} v{t.version}")
        for t in db.session.scalars(
            select(UsageTier)
            .where(UsageTier.project_id == project.id)
            .order_by(UsageTier.key, UsageTier.version)
        )
    ]
    return form


@bp.route("")
def index():
    return render_template("settings/index.html", form=_form(), project=current_project(db.session))


@bp.route("", methods=["POST"])
@owner_required
def save():
    form = _form(request.form)
    if not form.validate():
        return render_template("settings/index.html", form=form, project=current_project(db.session)), 400
    tier = db.session.get(UsageTier, form.default_tier.data)
    changes = {
        "new_customer_initial_tokens": form.new_customer_initial_tokens.data,
        "approval_tokens": form.approval_tokens.data,
        "default_tier": {"key": tier.key, "version": tier.version},
        "default_shedding_tier": form.default_shedding_tier.data,
        "default_allowed_regions": form.regions(),
        "low_balance_tokens": form.low_balance_tokens.data,
        "require_customer": form.require_customer.data,
        "shedding_level": form.shedding_level.data,
        "capacity": form.capacity.data,
        "auto_shedding": form.auto_shedding.data,
        "portal_frame_origins": form.frame_origins(),
    }
    with session_writes(db.session):
        project = current_project(db.session)
        apply_settings(db.session, project, changes)
        project_id = project.id
    levels.after_settings(current_app.extensions["tollgate.gateway"], project_id, now_utc())
    flash("Settings saved. Every worker uses them within about a second.", "success")
    return redirect(url_for("settings.index"))
