"""Errors of the browser admin as pages people can act on; the machine surfaces keep their JSON."""

from __future__ import annotations

from functools import cache

from flask import Response, render_template, request
from werkzeug.http import HTTP_STATUS_CODES

from app.web_session import SESSIONLESS

EXPLAINED = {
    400: (
        "That could not be sent",
        "The form had expired or did not come from this admin. Go back, reload the page and send it again.",
    ),
    403: (
        "Owners only",
        "You are signed in as a viewer: you can read everything here; an owner makes the changes.",
    ),
    404: (
        "Not found",
        "There is nothing here in this project. It may have been removed, or belong to another "
        "project: the switcher at the top picks the project.",
    ),
    500: (
        "Something went wrong",
        "The error was logged. Nothing was half done: every change is a single transaction.",
    ),
}


@cache
def _machine_paths() -> tuple[str, ...]:
    """Paths whose callers are programs: the proxy, the API, probes, and LiteLLM's routes (their shape)."""
    from app.api.litellm import PATH_PREFIXES  # imported late: app.api imports this module's users

    return SESSIONLESS + PATH_PREFIXES


def for_browser() -> bool:
    return not request.path.startswith(_machine_paths())


def page(status: int, detail: str | None = None) -> tuple[Response | str, int]:
    """An error page that stands alone (no navigation): it must render even when the database is down."""
    title, text = EXPLAINED.get(status, (HTTP_STATUS_CODES.get(status, "Error"), ""))
    return render_template("error.html", status=status, title=title, text=text, detail=detail), status
