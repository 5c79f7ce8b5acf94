"""Sign in and out (SPEC 10: log in required everywhere in the admin)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from app.auth import bp
from app.auth.forms import SignInForm
from app.auth.operations import authenticate
from app.extensions import db


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
        if _throttle().blocked(form.email.data, address):
            form.password.errors.append("Too many failed attempts. Wait 15 minutes and try again.")
            return render_template("auth/sign_in.html", form=form), 429
        user = authenticate(db.session, form.email.data, form.password.data)
        if user is None:
            _throttle().failed(form.email.data, address)
            form.password.errors.append("That email and password do not match an admin.")
            return render_template("auth/sign_in.html", form=form), 401
        login_user(user, remember=form.remember.data)
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/sign_in.html", form=form)


@bp.route("/sign-out", methods=["POST"])
def sign_out():
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.sign_in"))
