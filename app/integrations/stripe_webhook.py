"""`POST /integrations/stripe/{project_slug}/webhook` (SPEC 7.5): Stripe's signature, checked with
the project's signing secret before anything else is read, is the only authentication. Errors have
the API's shape (SPEC 3.3): Stripe's dashboard shows them beside each failed delivery."""

from __future__ import annotations

import json

import stripe
from flask import Blueprint, current_app, request

from app.api.errors import ApiError
from app.crypto import unseal
from app.db import now_utc, session_writes
from app.extensions import csrf, db
from app.integrations import fulfilment, stripe_api
from app.models.project import Project
from app.projects.operations import find_project

TOLERANCE_S = 300  # Stripe's own default; each retry is signed afresh

bp = Blueprint("stripe_webhook", __name__, url_prefix="/integrations/stripe")
csrf.exempt(bp)


@bp.errorhandler(ApiError)
def _error(exc: ApiError):
    return exc.response()


@bp.route("/<slug>/webhook", methods=["POST"])
def webhook(slug: str):
    project = find_project(db.session, slug)
    if project is None:
        raise ApiError(404, f"no project {slug!r}", param="project_slug")
    event = _verified(project, request.get_data(cache=False))
    if fulfilment.seen(db.session, project, event["id"]):
        return {"received": True, "outcome": "duplicate"}
    lines = _line_items(project, event)
    with session_writes(db.session):
        received = fulfilment.receive(db.session, project, event, lines, now_utc())
        outcome = received.outcome if received else "duplicate"
    return {"received": True, "outcome": outcome}


def _verified(project: Project, payload: bytes) -> dict:
    """The event, once its signature proved it came from Stripe with this project's secret."""
    secret = unseal(current_app.config["SECRET_KEY"], project.stripe_webhook_secret)
    if not secret:
        raise ApiError(
            400, f"project {project.slug!r} has no Stripe webhook secret: set it on the Integrations page"
        )
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"),
            request.headers.get("Stripe-Signature", ""),
            secret,
            tolerance=TOLERANCE_S,
        )
    except stripe.SignatureVerificationError as exc:
        raise ApiError(400, f"Stripe-Signature does not verify: {exc.user_message or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ApiError(400, "not a Stripe event: the body is not UTF-8") from exc
    try:
        return _event(json.loads(payload))
    except ValueError as exc:
        raise ApiError(400, f"not a Stripe event: {exc}") from exc


def _event(event: object) -> dict:
    """A signed body is Stripe's, but only a well-formed event is processed."""
    data = event.get("data") if isinstance(event, dict) else None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not 0 < len(event["id"]) <= 200
        or not isinstance(event.get("type"), str)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise ApiError(400, "not a Stripe event: it needs id, type and data.object")
    if event.get("object") == "v2.core.event":
        raise ApiError(
            400, "a thin event: this endpoint takes snapshot events (Stripe's classic webhook endpoint)"
        )
    return event


def _line_items(project: Project, event: dict) -> list[tuple[str, int]] | None:
    """Read before the write transaction: no database lock is held while Stripe answers."""
    session_id = fulfilment.wants_line_items(db.session, project, event)
    if session_id is None:
        return None
    api_key = unseal(current_app.config["SECRET_KEY"], project.stripe_api_key)
    assert api_key is not None
    try:
        return stripe_api.line_items(api_key, session_id, current_app.config["TOLLGATE"].stripe_api_base)
    except stripe_api.StripeUnavailable as exc:
        current_app.logger.warning("stripe event %s for %s: %s", event["id"], project.slug, exc)
        # Not recorded: Stripe retries the event, and it is processed once the API answers.
        raise ApiError(503, str(exc), code="stripe_unavailable") from exc
