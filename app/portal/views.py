"""/portal/<token>: the customer's own usage page (SPEC 10). No sign-in, read-only, no admin
navigation; framed only by the origins the project lists; `?format=json` for programs."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, make_response, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from app.api.errors import ApiError
from app.db import now_utc
from app.extensions import db
from app.models.project import Project
from app.portal import links, origins
from app.portal.summary import LAST_CALLS, as_json, exact_usd, summarize

bp = Blueprint("portal", __name__, url_prefix="/portal")

NOT_FOUND = "This link does not work: it may have expired or been replaced. Ask for a new one."


def address(link: links.Link) -> str:
    """The link as people open it: under TOLLGATE_PUBLIC_URL when set, else the address this
    request came to (the admin's or the API caller's)."""
    public = current_app.config["TOLLGATE"].public_url
    if public:
        return public + url_for("portal.page", token=link.token)
    return url_for("portal.page", token=link.token, _external=True)


@bp.route("/", defaults={"token": ""})
@bp.route("/<path:token>")
def page(token: str):
    customer = links.resolve(db.session, current_app.config["SECRET_KEY"], token, now_utc())
    if customer is None:
        return _not_found()
    project = db.session.get(Project, customer.project_id)
    summary = summarize(db.session, customer)
    if request.args.get("format") == "json":
        response = jsonify(as_json(summary))
    else:
        response = make_response(
            render_template(
                "portal/page.html",
                summary=summary,
                project_name=project.name if project else "",
                now=now_utc(),
                last_calls=LAST_CALLS,
                exact_usd=exact_usd,
            )
        )
    return _framed_by(response, list(project.portal_frame_origins or []) if project else [])


def _not_found():
    """One answer for a link altered, revoked, expired or never made: nothing tells them apart."""
    if request.args.get("format") == "json":
        return ApiError(404, NOT_FOUND).response()
    return render_template("portal/message.html", title="Link not valid", message=NOT_FOUND), 404


@bp.errorhandler(Exception)
def _failed(exc: Exception):
    """The customer's own error page, with no way into the admin (its error page links there)."""
    if isinstance(exc, HTTPException):
        return exc
    current_app.logger.exception("unhandled error on the usage page")
    text = "Something went wrong on our side. Try again in a moment."
    return render_template("portal/message.html", title="Something went wrong", message=text), 500


def _framed_by(response: Response, listed: list[str]) -> Response:
    """Framed by the project's listed origins only (CSP frame-ancestors). The admin's
    X-Frame-Options: DENY would block even those, so it is sent only when none are listed."""
    response.headers["Content-Security-Policy"] = origins.policy(listed)
    if listed:
        response.headers.pop("X-Frame-Options", None)
    else:
        response.headers["X-Frame-Options"] = "DENY"
    return response


@bp.after_request
def _headers(response: Response) -> Response:
    """Every answer here, errors included: framed by no one unless the page said otherwise; and
    the token is in the URL, so no Referer carries it away and no cache or search engine keeps it."""
    if "Content-Security-Policy" not in response.headers:
        _framed_by(response, [])
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response
