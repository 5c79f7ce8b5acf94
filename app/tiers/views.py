"""Usage tiers in the admin: versions with their customer counts, clone, migrate with a preview."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from app.auth import owner_required
from app.customers.listing import current_project
from app.customers.operations import migrate_customers
from app.db import now_utc, session_writes
from app.errors import DomainError
from app.extensions import db
from app.models.customer import Customer
from app.models.tier import UsageTier
from app.tiers.forms import MigrateForm, TierVersionForm, form_data
from app.tiers.operations import TierLocked, clone_tier, create_tier, edit_tier, find_version

bp = Blueprint("tiers", __name__, url_prefix="/tiers")


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here needs a signed-in admin."""


def _versions(project_id: int, key: str | None = None):
    stmt = select(UsageTier).where(UsageTier.project_id == project_id)
    if key is not None:
        stmt = stmt.where(UsageTier.key == key)
    return db.session.scalars(stmt.order_by(UsageTier.key, UsageTier.version)).all()


def _counts(project_id: int) -> dict[int, int]:
    rows = db.session.execute(
        select(Customer.tier_id, func.count())
        .where(Customer.project_id == project_id)
        .group_by(Customer.tier_id)
    )
    return {tier_id: count for tier_id, count in rows}


@bp.route("")
def index():
    project = current_project(db.session)
    return render_template(
        "tiers/index.html", project=project, tiers=_versions(project.id), counts=_counts(project.id)
    )


@bp.route("/<key>/versions/<id:version>/clone", methods=["POST"])
@owner_required
def clone(key: str, version: int):
    try:
        with session_writes(db.session):
            copy = clone_tier(db.session, find_version(db.session, current_project(db.session), key, version))
            made = copy.version
    except DomainError:
        abort(404)
    flash(f"{key} v{made} is an editable copy of v{version}.", "success")
    return redirect(url_for("tiers.edit_form", key=key, version=made))


def _version_page(form: TierVersionForm, tier: UsageTier | None, status: int = 200, refusal: str = ""):
    latest = max((v.version for v in _versions(tier.project_id, tier.key)), default=0) if tier else 0
    return render_template(
        "tiers/version.html", form=form, tier=tier, refusal=refusal, next_version=latest + 1
    ), status


def _found(key: str, version: int) -> UsageTier:
    try:
        return find_version(db.session, current_project(db.session), key, version)
    except DomainError:
        abort(404)


@bp.route("/new")
def new():
    return _version_page(TierVersionForm(formdata=None), None)


@bp.route("/new", methods=["POST"])
@owner_required
def create():
    form = TierVersionForm()
    if form.validate():
        try:
            with session_writes(db.session):
                key = create_tier(db.session, current_project(db.session), form.spec()).key
        except DomainError as refused:
            form.show_refusal(refused.field, refused.message)
        else:
            flash(f"Created {key} v1.", "success")
            return redirect(url_for("tiers.index"))
    return _version_page(form, None, 400)


@bp.route("/<key>/versions/<id:version>/edit")
def edit_form(key: str, version: int):
    tier = _found(key, version)
    form = TierVersionForm(formdata=None, data=form_data(tier))
    if tier.locked and current_user.role == "owner":  # a viewer is only reading it
        return _version_page(form, tier, 409, TierLocked.about(tier))
    return _version_page(form, tier)


@bp.route("/<key>/versions/<id:version>/edit", methods=["POST"])
@owner_required
def edit(key: str, version: int):
    tier = _found(key, version)
    formdata = request.form.copy()
    formdata["key"] = tier.key  # shown read-only: a tier's key never changes
    form = TierVersionForm(formdata)
    if form.validate():
        try:
            with session_writes(db.session):
                edit_tier(db.session, tier, form.spec())
        except TierLocked as refused:
            return _version_page(form, _found(key, version), 409, refused.message)
        except DomainError as refused:
            form.show_refusal(refused.field, refused.message)
        else:
            flash(f"Saved {key} v{version}.", "success")
            return redirect(url_for("tiers.index"))
    return _version_page(form, _found(key, version), 400)


def _migrate_page(key: str, form: MigrateForm, preview: int | None = None, status: int = 200):
    project = current_project(db.session)
    versions = _versions(project.id, key)
    if not versions:
        abort(404)
    return render_template(
        "tiers/migrate.html",
        key=key,
        versions=versions,
        counts=_counts(project.id),
        form=form,
        preview=preview,
    ), status


@bp.route("/<key>/migrate")
def migrate_form(key: str):
    return _migrate_page(key, MigrateForm(formdata=None))


@bp.route("/<key>/migrate", methods=["POST"])
@owner_required
def migrate(key: str):
    form = MigrateForm()
    if not form.validate():
        return _migrate_page(key, form, status=400)
    project = current_project(db.session)
    try:
        with session_writes(db.session):
            moved = migrate_customers(
                db.session,
                project,
                key,
                form.from_version.data,
                form.to_version.data,
                form.chosen(),
                f"admin:{current_user.email}",
                now_utc(),
            )
            if not form.confirm.data:
                raise _Preview(moved)  # count what would move, then roll it all back
    except _Preview as preview:
        return _migrate_page(key, form, preview=preview.count)
    except DomainError as refused:
        getattr(
            form, refused.field if refused.field in ("customer_ids", "to_version") else "from_version"
        ).errors.append(refused.message)
        return _migrate_page(key, form, status=400)
    flash(
        f"Moved {moved} customer{'' if moved == 1 else 's'} from {key} v{form.from_version.data} "
        f"to v{form.to_version.data}.",
        "success",
    )
    return redirect(url_for("tiers.index"))


class _Preview(Exception):
    def __init__(self, count: int):
        super().__init__(count)
        self.count = count
