"""Projects in the admin: list, create (with a first proxy key shown once), rename, switch (SPEC 10).

The project an admin looks at is kept in the signed cookie session; every other admin page reads it
through `current_project`.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask import session as cookie
from flask_login import login_required
from sqlalchemy import func, select

from app import resubmission
from app.auth import owner_required
from app.customers.listing import current_project
from app.db import session_writes
from app.errors import DomainError
from app.extensions import db
from app.form_errors import show_refusal
from app.keys.operations import create_key
from app.models.api_key import ApiKey
from app.models.customer import Customer
from app.models.project import Project
from app.projects.current import FIELD
from app.projects.forms import ProjectForm, RenameForm
from app.projects.operations import create_project, find_project, rename_project

bp = Blueprint("projects", __name__, url_prefix="/projects")


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here needs a signed-in admin."""


@bp.app_context_processor
def _switcher() -> dict:
    """The navigation's project switcher; queried only by pages that render the navigation."""

    def projects() -> tuple[list[tuple[str, str]], str | None]:
        """(slug, name) of every project, and the slug looked at (as `current_project` picks it)."""
        rows = [(slug, name) for slug, name in db.session.execute(select(Project.slug, Project.name))]
        slugs = {slug for slug, _ in rows}
        here = next((s for s in (cookie.get(FIELD), "default") if s in slugs), min(slugs, default=None))
        return sorted(rows, key=lambda row: row[1].lower()), here

    return {"project_switcher": projects}


def _counts(model, *where) -> dict[int, int]:
    rows = db.session.execute(select(model.project_id, func.count()).where(*where).group_by(model.project_id))
    return dict(rows.all())


def _page(
    form: ProjectForm,
    secret: str | None = None,
    status: int = 200,
    renaming: tuple[str, RenameForm] | None = None,
):
    """The projects page; `renaming` is a refused rename (slug, its form) shown in that project's row."""
    return render_template(
        "projects/index.html",
        projects=db.session.scalars(select(Project).order_by(Project.name)).all(),
        customers=_counts(Customer),
        keys=_counts(ApiKey, ApiKey.revoked_at.is_(None)),
        current=current_project(db.session),
        form=form,
        renaming=renaming,
        secret=secret,
    ), status


@bp.route("")
def index():
    return _page(ProjectForm(formdata=None))


@bp.route("", methods=["POST"])
@owner_required
def create():
    form = ProjectForm()
    if not form.validate():
        return _page(form, status=400)
    try:
        with session_writes(db.session):
            resubmission.claim_or_refuse(db.session, current_project(db.session).id)
            project = create_project(db.session, form.slug.data.strip(), form.name.data)
            _, secret = create_key(db.session, project, "first key", "proxy")
            slug, name = project.slug, project.name
    except resubmission.AlreadySent:
        flash("That form was sent already and its project made then.", "error")
        return redirect(url_for("projects.index"))
    except DomainError as refused:
        show_refusal(form, refused, fallback="slug")
        return _page(form, status=400)
    cookie[FIELD] = slug  # look at what was just made
    # Shown once, in this response only: keys are stored as hashes.
    flash(
        f"Project {name} created with the default tier and a first proxy key. Copy the key now; "
        "then add a model (Models) for it to call.",
        "success",
    )
    return _page(ProjectForm(formdata=None), secret=secret, status=201)


@bp.route("/<slug>/rename", methods=["POST"])
@owner_required
def rename(slug: str):
    form = RenameForm()
    project = find_project(db.session, slug)
    if project is None:
        abort(404)
    if not form.validate():
        return _page(ProjectForm(formdata=None), status=400, renaming=(slug, form))
    with session_writes(db.session):
        rename_project(db.session, project, form.name.data)
    flash(f"Renamed to {form.name.data.strip()}.", "success")
    return redirect(url_for("projects.index"))


@bp.route("/switch")
def switch():
    """A GET: it changes only which project this browser looks at, so viewers may use it too."""
    project = find_project(db.session, request.args.get("project", ""))
    if project is None:
        abort(404)
    cookie[FIELD] = project.slug
    return redirect(url_for("root"))
