"""Admin users in the admin: list, add, change role, remove (the last owner stays), SPEC 10."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import login_required
from sqlalchemy import select

from app.admins import operations as ops
from app.admins.forms import AddAdminForm, RoleForm
from app.auth import owner_required
from app.db import session_writes
from app.errors import DomainError
from app.extensions import db
from app.form_errors import show_refusal
from app.models.admin_user import AdminUser

bp = Blueprint("admins", __name__, url_prefix="/admins")


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here needs a signed-in admin."""


def _page(form: AddAdminForm, status: int = 200):
    users = db.session.scalars(select(AdminUser).order_by(AdminUser.email)).all()
    return render_template("admins/index.html", users=users, form=form, role_form=RoleForm), status


@bp.route("")
def index():
    return _page(AddAdminForm(formdata=None))


@bp.route("", methods=["POST"])
@owner_required
def add():
    form = AddAdminForm()
    if not form.validate():
        return _page(form, 400)
    try:
        with session_writes(db.session):
            user = ops.add_admin(db.session, form.email.data, form.password.data, form.role.data)
            email = user.email
    except DomainError as refused:
        show_refusal(form, refused, fallback="email")
        return _page(form, 400)
    flash(f"{email} can sign in now.", "success")
    return redirect(url_for("admins.index"))


@bp.route("/<id:user_id>/role", methods=["POST"])
@owner_required
def change_role(user_id: int):
    form = RoleForm()
    if not form.validate():
        flash("Choose owner or viewer.", "error")
        return redirect(url_for("admins.index"))
    try:
        with session_writes(db.session):
            ops.change_role(db.session, ops.find_admin(db.session, user_id), form.role.data)
    except DomainError as refused:
        flash(refused.message[0].upper() + refused.message[1:] + ".", "error")
    return redirect(url_for("admins.index"))


@bp.route("/<id:user_id>/remove", methods=["POST"])
@owner_required
def remove(user_id: int):
    try:
        with session_writes(db.session):
            ops.remove_admin(db.session, ops.find_admin(db.session, user_id))
    except DomainError as refused:
        flash(refused.message[0].upper() + refused.message[1:] + ".", "error")
    return redirect(url_for("admins.index"))
