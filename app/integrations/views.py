"""Integrations in the admin (SPEC 10): Stripe (signing secret and API key, write-only; the price
map as rows; the webhook URL to paste; the events received and what they did), webhook
subscriptions (add with event types, the secret shown once, remove), their deliveries with a
Retry button, LiteLLM's webhook, and how to connect the Zapier app."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import login_required
from sqlalchemy import func, select

from app import resubmission
from app.auth import owner_required
from app.customers.listing import current_project
from app.db import now_utc, row_id, session_writes
from app.errors import DomainError, NotFound
from app.events import hooks
from app.extensions import db
from app.form_errors import show_refusal
from app.integrations.forms import HookForm, LiteLLMForm, StripeForm
from app.integrations.operations import configure_stripe, tier_keys
from app.models.event import Delivery, Event, Hook
from app.models.ledger import LedgerEntry
from app.models.project import Project
from app.models.purchase import OUTCOMES, InboundWebhook
from app.models.usage import UsageRecord
from app.settings.operations import apply_settings

bp = Blueprint("integrations", __name__, url_prefix="/integrations")
PAGE = 100
RECENT = 20  # received Stripe events on the Integrations page; the rest on their own page
BLANK_PRICE_ROWS = 3
# What to enable on the Stripe endpoint (SPEC 7.5): what each one does is in the docs.
STRIPE_EVENT_TYPES = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "charge.refunded",
    "invoice.paid",
    "customer.subscription.deleted",
)


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here needs a signed-in admin."""


def _page(
    form: HookForm | None = None,
    litellm: LiteLLMForm | None = None,
    secret: str | None = None,
    stripe: StripeForm | None = None,
    status=200,
):
    project = current_project(db.session)
    rows = db.session.scalars(
        select(Hook).where(Hook.project_id == project.id).order_by(Hook.id.desc())
    ).all()
    counts = {
        (hook_id, state): n
        for hook_id, state, n in db.session.execute(
            select(Delivery.hook_id, Delivery.status, func.count())
            .where(Delivery.hook_id.in_([h.id for h in rows]))
            .group_by(Delivery.hook_id, Delivery.status)
        )
    }
    settings = current_app.config["TOLLGATE"]
    owed = db.session.scalar(
        select(func.count()).where(
            UsageRecord.project_id == project.id, UsageRecord.litellm_pending.is_(True)
        )
    )
    return render_template(
        "integrations/index.html",
        project=project,
        hooks=rows,
        counts=counts,
        form=form or HookForm(formdata=None),
        litellm=litellm or LiteLLMForm(formdata=None, litellm_webhook_url=project.litellm_webhook_url),
        server_webhook_url=settings.webhook_url,
        litellm_owed=owed,
        secret=secret,
        base_url=request.host_url.rstrip("/"),
        stripe=stripe or _stripe_form(project),
        stripe_webhook_url=request.host_url + f"integrations/stripe/{project.slug}/webhook",
        stripe_event_types=STRIPE_EVENT_TYPES,
        stripe_rows=_received(project, None, RECENT),
    ), status


@bp.route("")
def index():
    return _page()


@bp.route("/hooks", methods=["POST"])
@owner_required
def add_hook():
    form = HookForm()
    if not form.validate():
        return _page(form=form, status=400)
    try:
        with session_writes(db.session):
            project = current_project(db.session)
            resubmission.claim_or_refuse(db.session, project.id)
            hook, secret = hooks.create_hook(
                db.session, project, form.target_url.data, form.events.data, current_app.config["SECRET_KEY"]
            )
            url = hook.target_url
    except resubmission.AlreadySent:
        flash(
            "That form was sent already and its subscription made then; its secret is shown only once.",
            "error",
        )
        return redirect(url_for("integrations.index"))
    except DomainError as exc:
        show_refusal(form, exc, fallback="target_url")
        return _page(form=form, status=400)
    # Shown once, in this response only: it is stored encrypted and never shown again.
    flash(f"Subscribed {url}. Copy its signing secret now: it will not be shown again.", "success")
    return _page(secret=secret, status=201)


def _hook(public_id: str) -> Hook:
    try:
        return hooks.find_hook(db.session, current_project(db.session), public_id)
    except DomainError:
        abort(404)


@bp.route("/hooks/<public_id>/remove", methods=["POST"])
@owner_required
def remove_hook(public_id: str):
    with session_writes(db.session):
        hook = _hook(public_id)
        url = hook.target_url
        db.session.delete(hook)
    flash(f"Removed the subscription of {url} and its deliveries.", "success")
    return redirect(url_for("integrations.index"))


@bp.route("/hooks/<public_id>")
def deliveries(public_id: str):
    """A subscription's deliveries, newest first (the latest PAGE)."""
    hook = _hook(public_id)
    rows = db.session.execute(
        select(Delivery, Event)
        .join(Event, Event.id == Delivery.event_id)
        .where(Delivery.hook_id == hook.id)
        .order_by(Delivery.id.desc())
        .limit(PAGE)
    ).all()
    return render_template(
        "integrations/deliveries.html", project=current_project(db.session), hook=hook, rows=rows, page=PAGE
    )


@bp.route("/deliveries/<id:delivery_id>/retry", methods=["POST"])
@owner_required
def retry(delivery_id: int):
    project = current_project(db.session)
    try:
        with session_writes(db.session):
            delivery = hooks.find_delivery(db.session, project, delivery_id)
            hook = db.session.get(Hook, delivery.hook_id)
            assert hook is not None
            public_id = hook.public_id
            hooks.retry_now(db.session, delivery, now_utc())
    except NotFound:
        abort(404)
    except DomainError as exc:  # delivered or cancelled, or being sent right now
        flash(exc.message, "error")
        return redirect(request.referrer or url_for("integrations.index"))
    flash(f"Delivery {delivery_id} will be sent again within a few seconds.", "success")
    return redirect(url_for("integrations.deliveries", public_id=public_id))


@bp.route("/litellm", methods=["POST"])
@owner_required
def save_litellm():
    litellm = LiteLLMForm()
    if not litellm.validate():
        return _page(litellm=litellm, status=400)
    try:
        with session_writes(db.session):
            apply_settings(
                db.session,
                current_project(db.session),
                {"litellm_webhook_url": litellm.litellm_webhook_url.data},
            )
    except DomainError as exc:
        show_refusal(litellm, exc, fallback="litellm_webhook_url")
        return _page(litellm=litellm, status=400)
    flash("LiteLLM webhook saved: calls made from now on are reported there.", "success")
    return redirect(url_for("integrations.index"))


# --- Stripe --------------------------------------------------------------------------------------


def _stripe_form(project: Project) -> StripeForm:
    rows = [
        {"price_id": price_id, "tokens": entry.get("tokens"), "tier": entry.get("tier") or ""}
        for price_id, entry in sorted((project.stripe_prices or {}).items())
    ]
    rows += [{"price_id": "", "tokens": None, "tier": ""}] * BLANK_PRICE_ROWS
    return StripeForm(formdata=None, data={"prices": rows}).with_tiers(_tier_choices(project))


def _tier_choices(project: Project) -> list[str]:
    return sorted(tier_keys(db.session, project))


def _received(project: Project, before: int | None, limit: int, outcome: str | None = None) -> list:
    """(received event, its ledger entry or None), newest first."""
    stmt = (
        select(InboundWebhook, LedgerEntry)
        .outerjoin(LedgerEntry, LedgerEntry.id == InboundWebhook.ledger_entry_id)
        .where(InboundWebhook.project_id == project.id)
    )
    if before is not None:
        stmt = stmt.where(InboundWebhook.id < before)
    if outcome is not None:
        stmt = stmt.where(InboundWebhook.outcome == outcome)
    return list(db.session.execute(stmt.order_by(InboundWebhook.id.desc()).limit(limit)))


@bp.route("/stripe-settings", methods=["POST"])
@owner_required
def save_stripe():
    project = current_project(db.session)
    form = StripeForm().with_tiers(_tier_choices(project))
    prices = form.price_map() if form.validate() else None
    if prices is None:
        return _page(stripe=form, status=400)
    changes: dict[str, object] = {"prices": prices}
    for name in ("webhook_secret", "api_key"):
        typed = (getattr(form, name).data or "").strip()
        if getattr(form, f"remove_{name}").data:
            changes[name] = None
        elif typed:
            changes[name] = typed
    try:
        with session_writes(db.session):
            configure_stripe(
                db.session, current_project(db.session), current_app.config["SECRET_KEY"], **changes
            )
    except DomainError as exc:
        show_refusal(form, exc)
        return _page(stripe=form, status=400)
    flash(
        f"Stripe settings saved: {len(prices)} price{'' if len(prices) == 1 else 's'} in the map.", "success"
    )
    return redirect(url_for("integrations.index") + "#stripe")


@bp.route("/stripe-events")
def stripe_events():
    """Every received Stripe event, newest first, PAGE at a time (`before`: a row id)."""
    project = current_project(db.session)
    outcome = request.args.get("outcome") or None
    if outcome is not None and outcome not in OUTCOMES:
        abort(404)
    before = row_id(request.args.get("before", ""))  # None past the id columns' range, or not a number
    rows = _received(project, before, PAGE + 1, outcome)
    older = rows[PAGE - 1][0].id if len(rows) > PAGE else None
    return render_template(
        "integrations/stripe_events.html",
        project=project,
        rows=rows[:PAGE],
        older=older,
        outcome=outcome,
        outcomes=OUTCOMES,
    )
