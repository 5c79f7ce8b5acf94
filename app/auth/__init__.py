"""Signing in to the web admin."""

from flask import Blueprint

bp = Blueprint("auth", __name__, url_prefix="/auth")

from app.auth import views  # noqa: E402,F401 - the routes register on bp


def owner_required(view):
    """Changes are for owners; viewers read (SPEC 10 roles)."""
    from functools import wraps

    from flask import abort
    from flask_login import current_user

    @wraps(view)
    def guarded(*args, **kwargs):
        if getattr(current_user, "role", None) != "owner":
            abort(403)
        return view(*args, **kwargs)

    return guarded
