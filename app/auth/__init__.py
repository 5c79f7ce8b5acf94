"""Signing in to the web admin."""

from app.auth import views  # noqa: F401 - the routes register on bp
from app.auth.blueprint import bp, owner_required

__all__ = ["bp", "owner_required"]
