"""The customers pages of the web admin (SPEC 10)."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from app.customers import listing
from app.extensions import db

bp = Blueprint("customers", __name__, url_prefix="/customers")


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here needs a signed-in admin."""


@bp.route("")
def index():
    query = listing.Query.from_args(request.args)
    page = listing.find(db.session, listing.current_project(db.session), query)
    return render_template("customers/index.html", page=page, query=query)
