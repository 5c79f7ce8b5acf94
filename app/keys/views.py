"""API keys in the admin: create (the secret shown once), list, revoke (SPEC 10)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import login_required
from sqlalchemy import select

from app import resubmission
from app.auth import owner_required
from app.customers.listing import current_project
from app.db import now_utc, session_writes
from app.extensions import db
from app.keys.forms import KeyForm
from app.keys.operations import create_key, revoke_key, spends
from app.models.api_key import ApiKey

bp = Blueprint("keys", __name__, url_prefix="/keys")


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here needs a signed-in admin."""


def _page(form: KeyForm, secret: str | None = None, status: int = 200):
    project = current_project(db.session)
    keys = db.session.scalars(
        select(ApiKey)
        .where(ApiKey.project_id == project.id)
        .order_by(ApiKey.revoked_at.is_not(None), ApiKey.id.desc())
    ).all()
    # A key with a budget shows its window's spend (what the budget counts), else its lifetime spend.
    spent = {key_id: spend for key_id, (spend, _) in spends(db.session, keys, now_utc()).items()}
    page = render_template(
        "keys/index.html", project=project, keys=keys, spends=spent, form=form, secret=secret
    )
    return page, status


@bp.route("")
def index():
    return _page(KeyForm(formdata=None))


@bp.route("", methods=["POST"])
@owner_required
def create():
    form = KeyForm()
    if not form.validate():
        return _page(form, status=400)
    try:
        with session_writes(db.session):
            project = current_project(db.session)
            resubmission.claim_or_refuse(db.session, project.id)
            key, secret = create_key(db.session, project, form.name.data, form.scope.data)
            name = key.name
    except resubmission.AlreadySent:
        flash(
            "That form was sent already and its key made then; a secret is shown only once. "
            "Revoke that key if its secret was not copied.",
            "error",
        )
        return redirect(url_for("keys.index"))
    # Shown once, in this response only: it is stored as a hash.
    flash(f"Key {name} created. Copy it now: it will not be shown again.", "success")
    return _page(KeyForm(formdata=None), secret=secret, status=201)


@bp.route("/<id:key_id>/revoke", methods=["POST"])
@owner_required
def revoke(key_id: int):
    project = current_project(db.session)
    with session_writes(db.session):
        key = db.session.get(ApiKey, key_id)
        if key is None or key.project_id != project.id:
            abort(404)
        revoke_key(db.session, key)
        name = key.name
    flash(f"Key {name} revoked: every worker refuses it within about a second.", "success")
    return redirect(url_for("keys.index"))
