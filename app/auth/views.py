"""Sign in and out (SPEC 10: log in required everywhere in the admin)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from app.admins.operations import end_sessions, set_password
from app.auth.blueprint import bp
from app.auth.forms import PasswordForm, SignInForm
from app.auth.operations import authenticate
from app.db import session_writes
from app.extensions import db
from app.models.admin_user import AdminUser


def _throttle():
    return current_app.extensions["tollgate.signin_throttle"]


def _safe_next(target: str | None) -> str:
    """Only paths on this site: never an open redirect."""
    if target and urlsplit(target).netloc == "" and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("root")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = SignInForm()
    if form.validate_on_submit():
        address = request.remote_addr or "unknown"
        if not _throttle().attempt(db.session, form.email.data, address):
            form.password.errors.append("Too many failed attempts. Wait 15 minutes and try again.")
            return render_template("auth/sign_in.html", form=form), 429, {"Retry-After": "900"}
        user = authenticate(db.session, form.email.data, form.password.data)
        if user is None:
            form.password.errors.append("That email and password do not match an admin.")
            return render_template("auth/sign_in.html", form=form), 401
        _throttle().succeeded(db.session, form.email.data, address)
        login_user(user)
        # Keep me signed in: a permanent session (SESSION_LIFETIME from the last visit), never
        # Flask-Login's remember cookie, whose age no server checks.
        session.permanent = bool(form.remember.data)
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/sign_in.html", form=form)


@bp.route("/sign-out", methods=["POST"])
def sign_out():
    """Ends every session of this admin, on every device, not just this browser's cookie."""
    if current_user.is_authenticated:
        with session_writes(db.session):
            end_sessions(db.session, db.session.get(AdminUser, current_user.id))
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.sign_in"))


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password():
    """Every admin, viewers too, changes their own password (and only theirs). Their other sessions
    end; this browser stays signed in under the new identity (kept signed in if it was)."""
    form = PasswordForm()
    if not form.validate_on_submit():
        return render_template("auth/password.html", form=form), 400 if form.is_submitted() else 200
    if authenticate(db.session, current_user.email, form.current.data) is None:
        form.current.errors.append("That is not your current password.")
        return render_template("auth/password.html", form=form), 400
    user = db.session.get(AdminUser, current_user.id)
    with session_writes(db.session):
        set_password(db.session, user, form.new.data)
    login_user(user)  # the session stays permanent if it was
    flash("Your password is changed.", "success")
    return redirect(url_for("root"))
