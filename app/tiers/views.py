"""Usage tiers in the admin: every version's rules at a glance with its customer count, create, edit
while unlocked, clone, migrate with a preview of who moves, and which version new customers start on."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from app.auth import owner_required
from app.customers.listing import current_project
from app.customers.operations import MigrationPreview, migrate_customers, preview_migration
from app.db import now_utc, session_writes
from app.errors import DomainError
from app.extensions import db
from app.form_errors import show_refusal
from app.models.customer import Customer
from app.models.tier import UsageTier
from app.settings.operations import apply_settings
from app.tiers.forms import MigrateForm, TierVersionForm, form_data
from app.tiers.glance import glance
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
    tiers = _versions(project.id)
    return render_template(
        "tiers/index.html",
        project=project,
        groups=_by_key(tiers),
        counts=_counts(project.id),
        glances={t.id: glance(t) for t in tiers},
    )


def _by_key(tiers) -> list[tuple[str, list[UsageTier]]]:
    """Versions grouped by tier key, newest version first within each key."""
    keys = dict.fromkeys(t.key for t in tiers)
    return [(key, sorted((t for t in tiers if t.key == key), key=lambda t: -t.version)) for key in keys]


@bp.route("/<key>/versions/<id:version>/default", methods=["POST"])
@owner_required
def make_default(key: str, version: int):
    """New customers start on this version: the setting PATCH /api/settings `default_tier` changes."""
    tier = _found(key, version)
    name = tier.name
    with session_writes(db.session):
        apply_settings(
            db.session, current_project(db.session), {"default_tier": {"key": key, "version": version}}
        )
    flash(f"New customers now start on {name} ({key} v{version}).", "success")
    return redirect(url_for("tiers.index"))


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


def _version_page(form: TierVersionForm, tier: UsageTier | None, status: int = 200):
    latest = max((v.version for v in _versions(tier.project_id, tier.key)), default=0) if tier else 0
    project = current_project(db.session)
    return render_template(
        "tiers/version.html",
        form=form,
        tier=tier,
        next_version=latest + 1,
        locked_notice=_locked_notice(tier, latest + 1) if tier is not None and tier.locked else "",
        glance=glance(tier) if tier else None,
        customers=_counts(project.id).get(tier.id, 0) if tier else 0,
        is_default=tier is not None and tier.id == project.default_tier_id,
    ), status


def _locked_notice(tier: UsageTier, next_version: int) -> str:
    """Why a version reads only, and the way on: said calmly (nothing went wrong), with the number the
    Clone button makes (the key's next version, which is not always this one plus 1)."""
    return (
        f"v{tier.version} is locked because customers have used it; its rules can't change. Clone it to "
        f"make a new version (v{next_version}) you can edit and migrate customers to."
    )


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
            show_refusal(form, refused)
        else:
            flash(f"Created {key} v1.", "success")
            return redirect(url_for("tiers.index"))
    return _version_page(form, None, 400)


@bp.route("/<key>/versions/<id:version>/edit")
def edit_form(key: str, version: int):
    """The version's form: editable, or (locked, or for a viewer) read only."""
    tier = _found(key, version)
    return _version_page(TierVersionForm(formdata=None, data=form_data(tier)), tier)


@bp.route("/<key>/versions/<id:version>/edit", methods=["POST"])
@owner_required
def edit(key: str, version: int):
    tier = _found(key, version)
    if tier.locked:  # its stored rules, read only, and why: not the refused input's errors
        return _version_page(TierVersionForm(formdata=None, data=form_data(tier)), tier, 409)
    formdata = request.form.copy()
    formdata["key"] = tier.key  # shown read-only: a tier's key never changes
    form = TierVersionForm(formdata)
    if form.validate():
        try:
            with session_writes(db.session):
                edit_tier(db.session, tier, form.spec())
        except TierLocked:  # locked by an assignment since the check above
            tier = _found(key, version)
            return _version_page(TierVersionForm(formdata=None, data=form_data(tier)), tier, 409)
        except DomainError as refused:
            show_refusal(form, refused)
        else:
            flash(f"Saved {key} v{version}.", "success")
            return redirect(url_for("tiers.index"))
    return _version_page(form, _found(key, version), 400)


def _migrate_page(
    key: str,
    form: MigrateForm,
    preview: MigrationPreview | None = None,
    status: int = 200,
    previewed: int | None = None,
):
    project = current_project(db.session)
    versions = list(_versions(project.id, key))
    if not versions:
        abort(404)
    counts = _counts(project.id)
    form.with_versions(versions, counts, project.default_tier_id)
    return render_template(
        "tiers/migrate.html",
        key=key,
        versions=versions,
        counts=counts,
        form=form,
        preview=preview,
        previewed=previewed,
        source=next((v for v in versions if v.version == form.from_version.data), None),
        glances={v.id: glance(v) for v in versions},
    ), status


def _suggested(key: str) -> dict[str, int]:
    """From the oldest version that still has customers (else the oldest) to the newest, unless the
    link names them (`?from_version=1&to_version=3`)."""
    project = current_project(db.session)
    versions, counts = _versions(project.id, key), _counts(project.id)
    if not versions:
        abort(404)
    latest = versions[-1].version
    peopled = [v.version for v in versions if counts.get(v.id) and v.version != latest]
    chosen = {"from_version": peopled[0] if peopled else versions[0].version, "to_version": latest}
    for name in chosen:
        given = request.args.get(name, type=int)
        if given is not None and any(v.version == given for v in versions):
            chosen[name] = given
    if chosen["from_version"] == chosen["to_version"] and "to_version" not in request.args:
        # Migrate… on the newest version: no newer one, so the newest of the others.
        others = [v.version for v in versions if v.version != chosen["from_version"]]
        if others:
            chosen["to_version"] = others[-1]
    return chosen


@bp.route("/<key>/migrate")
def migrate_form(key: str):
    return _migrate_page(key, MigrateForm(formdata=None, data=_suggested(key)))


@bp.route("/<key>/migrate", methods=["POST"])
@owner_required
def migrate(key: str):
    """Without `confirm`: the preview (who would move; nothing changes). With it: the move, through
    the operation POST /api/tiers/{key}/migrate uses."""
    form = MigrateForm()
    if not form.validate():
        return _migrate_page(key, form, status=400)
    project = current_project(db.session)
    versions = (form.from_version.data, form.to_version.data)
    try:
        if not form.confirm.data:
            preview = preview_migration(db.session, project, key, *versions, form.chosen())
            return _migrate_page(key, form, preview=preview)
        if form.previewed.data is not None:  # customers joined or left the version since the preview:
            now = preview_migration(db.session, project, key, *versions, form.chosen())
            if now.total != form.previewed.data:  # the owner confirms what is there now
                return _migrate_page(key, form, preview=now, status=409, previewed=form.previewed.data)
        with session_writes(db.session):
            moved = migrate_customers(
                db.session, project, key, *versions, form.chosen(), f"admin:{current_user.email}", now_utc()
            )
    except DomainError as refused:
        show_refusal(form, refused, fallback="from_version")
        return _migrate_page(key, form, status=400)
    flash(
        f"Moved {moved} customer{'' if moved == 1 else 's'} from {key} v{versions[0]} to v{versions[1]}.",
        "success",
    )
    return redirect(url_for("tiers.migrated", key=key, from_version=versions[0], to_version=versions[1]))


@bp.route("/<key>/migrated")
def migrated(key: str):
    """After a migrate: where the customers are now, and whether new customers still start on the
    version they were moved off (then the offer to make the new version the default)."""
    project = current_project(db.session)
    source = _found(key, request.args.get("from_version", 0, type=int))
    target = _found(key, request.args.get("to_version", 0, type=int))
    return render_template(
        "tiers/migrated.html",
        key=key,
        source=source,
        target=target,
        default=db.session.get(UsageTier, project.default_tier_id) if project.default_tier_id else None,
        counts=_counts(project.id),
        glances={t.id: glance(t) for t in (source, target)},
    )
