"""The auth blueprint, and the guard of the views that change things."""

from flask import Blueprint

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.app_context_processor
def _roles() -> dict:
    """`can_change`: whether to offer the forms that change things (owners); viewers see values only."""
    from flask_login import current_user

    return {"can_change": getattr(current_user, "role", None) == "owner"}


def owner_required(view):
    """Changes are for owners; viewers read (SPEC 10 roles)."""
    from functools import wraps

    from flask import abort, flash, redirect, url_for
    from flask_login import current_user

    from app.projects.current import rendered_for_another_project

    @wraps(view)
    def guarded(*args, **kwargs):
        if getattr(current_user, "role", None) != "owner":
            abort(403)
        if rendered_for_another_project():
            flash(
                "Nothing was changed: that page was for another project, and this browser has "
                "switched projects since. Here is the project you are on now.",
                "error",
            )
            return redirect(url_for("root"))
        return view(*args, **kwargs)

    return guarded
