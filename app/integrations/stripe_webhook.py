"""`POST /integrations/stripe/{project_slug}/webhook` (SPEC 7.5): Stripe's signature, checked with
the project's signing secret before anything else is read, is the only authentication. Errors have
the API's shape (SPEC 3.3): Stripe's dashboard shows them beside each failed delivery."""

from __future__ import annotations

import json

import stripe
from flask import Blueprint, current_app, request

from app.api.errors import ApiError
from app.crypto import SecretError, unseal
from app.db import now_utc, session_writes
from app.extensions import csrf, db
from app.integrations import fulfilment, stripe_api
from app.integrations.received import FromStripe
from app.models.project import Project
from app.projects.operations import find_project

TOLERANCE_S = 300  # Stripe's own default; each retry is signed afresh
MAX_EVENT_ID = 180  # "stripe:refund:" + the id is a ledger key (200 characters); Stripe's are ~28

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
    fetched = _ask_stripe(project, event)
    with session_writes(db.session):
        received = fulfilment.receive(db.session, project, event, fetched, now_utc())
        outcome = received.outcome if received else "duplicate"
    return {"received": True, "outcome": outcome}


def _verified(project: Project, payload: bytes) -> dict:
    """The event, once its signature proved it came from Stripe with this project's secret."""
    secret = _unsealed(project.stripe_webhook_secret)
    if not secret:
        raise ApiError(
            400, f"project {project.slug!r} has no Stripe webhook secret: set it on the Integrations page"
        )
    header = request.headers.get("Stripe-Signature", "")
    if not header:
        raise ApiError(400, "no Stripe-Signature header: only Stripe's signed events are taken")
    try:
        stripe.WebhookSignature.verify_header(payload.decode("utf-8"), header, secret, tolerance=TOLERANCE_S)
    except stripe.SignatureVerificationError as exc:
        stale = "tolerance" in str(exc)
        why = (
            f"it is more than {TOLERANCE_S} s old" if stale else "no signature matches this project's secret"
        )
        raise ApiError(400, f"Stripe-Signature does not verify: {why}") from exc
    except UnicodeDecodeError as exc:
        raise ApiError(400, "not a Stripe event: the body is not UTF-8") from exc
    try:
        return _event(json.loads(payload))
    except ValueError as exc:
        raise ApiError(400, f"not a Stripe event: {exc}") from exc


def _event(event: object) -> dict:
    """A signed body is Stripe's, but only a well-formed snapshot event is processed."""
    data = event.get("data") if isinstance(event, dict) else None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not 0 < len(event["id"]) <= MAX_EVENT_ID
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


def _ask_stripe(project: Project, event: dict) -> FromStripe:
    """What Stripe's API must say first, asked outside any transaction (no database connection or
    lock is held while Stripe answers). When it cannot answer, the event is shown as `api_error`
    and answered 503: Stripe sends it again, and it is processed then."""
    what = fulfilment.wanted(db.session, project, event)
    db.session.commit()  # ends the reads' transaction before the network call
    if what is None:
        return FromStripe()
    api_key = _unsealed(project.stripe_api_key)
    if api_key is None:  # removed a moment ago, in the admin
        return FromStripe()
    try:
        return stripe_api.ask(api_key, current_app.config["TOLLGATE"].stripe_api_base, what)
    except stripe_api.StripeUnavailable as exc:
        if what[0] == "payment_intent":  # only refunds need it: the grant does not wait for it
            return FromStripe(unasked=str(exc))
        message = (
            f"{exc}; asking for {what[1]}'s {what[0].replace('_', ' ')}. Stripe will send the event again."
        )
        current_app.logger.warning("stripe event %s for %s: %s", event["id"], project.slug, message)
        with session_writes(db.session):
            fulfilment.record_api_error(db.session, project, event, message, now_utc())
        raise ApiError(503, message, code="stripe_unavailable") from exc


def _unsealed(stored: str | None) -> str | None:
    try:
        return unseal(current_app.config["SECRET_KEY"], stored)
    except SecretError as exc:
        raise ApiError(
            500,
            "the project's Stripe secrets cannot be decrypted with this server's TOLLGATE_SECRET_KEY: "
            "save them again on the Integrations page",
        ) from exc
