"""Models and deployments in the admin (SPEC 10, issue 5 "Build 6").

Every change goes through `app.catalog.operations`, the same functions the config file uses,
and bumps the config stamp: every proxy process serves it within about a second.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import login_required
from flask_wtf import FlaskForm
from wtforms.fields.choices import SelectChoice

from app.auth import owner_required
from app.catalog import listing, probe
from app.catalog import operations as ops
from app.catalog.forms import DeleteForm, DeploymentForm, ModelForm, NewModelForm, TierDefaultsForm
from app.customers.listing import current_project
from app.db import session_writes
from app.errors import DomainError, NotFound
from app.extensions import db
from app.form_errors import show_refusal
from app.models.catalog import Deployment, Model
from app.models.project import Project
from app.models.tier import MODEL_TIERS

bp = Blueprint("catalog", __name__, url_prefix="/models")

SAVED = "Every worker serves the change within about a second."


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here needs a signed-in admin."""


def _secret_key() -> str:
    return current_app.config["SECRET_KEY"]


def _refuse(form: FlaskForm, refused: DomainError, fallback: str) -> None:
    """Show a domain refusal next to the field it is about."""
    show_refusal(form, refused, fallback)


def _model(model_id: int) -> Model:
    try:
        return ops.find_model(db.session, current_project(db.session), model_id)
    except NotFound:
        abort(404)


def _deployment(model_id: int, deployment_id: int) -> Deployment:
    try:
        return ops.find_deployment(db.session, _model(model_id), deployment_id)
    except NotFound:
        abort(404)


# --- the models list ---------------------------------------------------------------------


def _defaults_form(project: Project, formdata=None) -> TierDefaultsForm:
    form = TierDefaultsForm(formdata, data=listing.tier_defaults(db.session, project))
    choices = [SelectChoice("", "none")] + [
        SelectChoice(m.name, f"{m.name} · {m.model_tier.replace('_', ' ')}")
        for m in listing.models_of(db.session, project)
    ]
    for model_tier in MODEL_TIERS:
        form[model_tier].choices = choices
    return form


def _index_page(
    new_form: NewModelForm | None = None, defaults_form: TierDefaultsForm | None = None, status=200
):
    project = current_project(db.session)
    return render_template(
        "catalog/index.html",
        project=project,
        rows=listing.rows(db.session, project),
        new_form=new_form or NewModelForm(formdata=None),
        defaults_form=defaults_form or _defaults_form(project),
        model_tiers=MODEL_TIERS,
    ), status


@bp.route("")
def index():
    return _index_page()


@bp.route("", methods=["POST"])
@owner_required
def create():
    form = NewModelForm(request.form)
    if not form.validate():
        return _index_page(new_form=form, status=400)
    try:
        with session_writes(db.session):
            model = ops.create_model(db.session, current_project(db.session), form.spec())
            model_id, name = model.id, model.name
    except DomainError as refused:
        _refuse(form, refused, "name")
        return _index_page(new_form=form, status=400)
    flash(f"Model {name} created. Add a deployment to serve it.", "success")
    return redirect(url_for("catalog.detail", model_id=model_id))


@bp.route("/tier-defaults", methods=["POST"])
@owner_required
def save_tier_defaults():
    form = _defaults_form(current_project(db.session), request.form)
    if not form.validate():
        return _index_page(defaults_form=form, status=400)
    try:
        with session_writes(db.session):
            ops.set_tier_defaults(db.session, current_project(db.session), form.chosen())
    except DomainError as refused:
        _refuse(form, refused, MODEL_TIERS[0])
        return _index_page(defaults_form=form, status=400)
    flash(f"Default models saved. {SAVED}", "success")
    return redirect(url_for("catalog.index"))


# --- one model and its deployments -------------------------------------------------------


def _model_form(model: Model) -> ModelForm:
    price_in, price_out = model.input_nusd_per_mtok, model.output_nusd_per_mtok
    return ModelForm(
        formdata=None,
        model_tier=model.model_tier,
        input_per_mtok="" if price_in is None else listing.usd_text(price_in),
        output_per_mtok="" if price_out is None else listing.usd_text(price_out),
    )


def _deployment_form(d: Deployment, formdata=None) -> DeploymentForm:
    # Built field by field: the stored (sealed) secret must never reach a form.
    values = dict(
        provider=d.provider,
        base_url=d.base_url,
        api_version=d.api_version or "",
        model=d.upstream_model,
        region=d.region,
        weight=d.weight,
        timeout_s=d.timeout_s,
        enabled=d.enabled,
    )
    return DeploymentForm(formdata, prefix=f"d{d.id}", data=values)


def _detail_page(
    model_id: int,
    *,
    model_form: ModelForm | None = None,
    added: DeploymentForm | None = None,
    edited: tuple[int, DeploymentForm] | None = None,
    delete_form: DeleteForm | None = None,
    tested: tuple[int, probe.Outcome] | None = None,
    status: int = 200,
):
    """The model page; a submitted form comes back with its input and errors, the rest fresh."""
    model = _model(model_id)
    forms = {d.id: _deployment_form(d) for d in model.deployments}
    if edited is not None:
        forms[edited[0]] = edited[1]
    return render_template(
        "catalog/detail.html",
        model=model,
        price=listing.price_shown(model),
        model_form=model_form or _model_form(model),
        added=added or DeploymentForm(formdata=None, prefix="new"),
        forms=forms,
        delete_form=delete_form or DeleteForm(formdata=None),
        tested=tested,
    ), status


@bp.route("/<id:model_id>")
def detail(model_id: int):
    return _detail_page(model_id)


@bp.route("/<id:model_id>", methods=["POST"])
@owner_required
def save(model_id: int):
    _model(model_id)
    form = ModelForm(request.form)
    if not form.validate():
        return _detail_page(model_id, model_form=form, status=400)
    try:
        with session_writes(db.session):
            ops.update_model(db.session, _model(model_id), form.spec())
    except DomainError as refused:
        _refuse(form, refused, "input_per_mtok")
        return _detail_page(model_id, model_form=form, status=400)
    flash(f"Model saved. {SAVED}", "success")
    return redirect(url_for("catalog.detail", model_id=model_id))


@bp.route("/<id:model_id>/delete", methods=["POST"])
@owner_required
def delete(model_id: int):
    _model(model_id)
    form = DeleteForm(request.form)
    if not form.validate():
        return _detail_page(model_id, delete_form=form, status=400)
    with session_writes(db.session):
        model = _model(model_id)
        name = model.name
        ops.delete_model(db.session, model)
    flash(f"Model {name} deleted. {SAVED}", "success")
    return redirect(url_for("catalog.index"))


@bp.route("/<id:model_id>/deployments", methods=["POST"])
@owner_required
def add_deployment(model_id: int):
    _model(model_id)
    form = DeploymentForm(request.form, prefix="new")
    if not form.validate():
        return _detail_page(model_id, added=form, status=400)
    try:
        with session_writes(db.session):
            ops.add_deployment(db.session, _model(model_id), form.spec(), _secret_key())
    except DomainError as refused:
        _refuse(form, refused, "provider")
        return _detail_page(model_id, added=form, status=400)
    flash(f"Deployment added. {SAVED}", "success")
    return redirect(url_for("catalog.detail", model_id=model_id))


@bp.route("/<id:model_id>/deployments/<id:deployment_id>", methods=["POST"])
@owner_required
def save_deployment(model_id: int, deployment_id: int):
    form = _deployment_form(_deployment(model_id, deployment_id), request.form)
    if not form.validate():
        return _detail_page(model_id, edited=(deployment_id, form), status=400)
    try:
        with session_writes(db.session):
            deployment = _deployment(model_id, deployment_id)
            ops.update_deployment(db.session, deployment, form.spec(), _secret_key())
    except DomainError as refused:
        _refuse(form, refused, "provider")
        return _detail_page(model_id, edited=(deployment_id, form), status=400)
    flash(f"Deployment saved. {SAVED}", "success")
    return redirect(url_for("catalog.detail", model_id=model_id))


@bp.route("/<id:model_id>/deployments/<id:deployment_id>/remove", methods=["POST"])
@owner_required
def remove_deployment(model_id: int, deployment_id: int):
    _deployment(model_id, deployment_id)
    with session_writes(db.session):
        ops.remove_deployment(db.session, _deployment(model_id, deployment_id))
    flash(f"Deployment removed. {SAVED}", "success")
    return redirect(url_for("catalog.detail", model_id=model_id))


@bp.route("/<id:model_id>/deployments/<id:deployment_id>/test", methods=["POST"])
@owner_required
def try_deployment(model_id: int, deployment_id: int):
    """One real call to this deployment; nobody is charged and nothing is recorded."""
    try:
        target = probe.target(_deployment(model_id, deployment_id), _secret_key())
    except probe.Unusable as exc:
        outcome = probe.Outcome(False, None, 0, str(exc))
    else:
        db.session.rollback()  # hold no transaction while the upstream takes its time
        outcome = probe.call(current_app.extensions["tollgate.gateway"].client, target)
    return _detail_page(model_id, tested=(deployment_id, outcome))
