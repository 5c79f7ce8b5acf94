"""The customers pages of the web admin (SPEC 10)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from app.auth import owner_required
from app.customers import listing, timeline
from app.customers import operations as ops
from app.customers.forms import (
    ApproveForm,
    BulkApproveForm,
    DetailsForm,
    NewCustomerForm,
    TierForm,
    TokensForm,
)
from app.customers.reconciliation import reconcile
from app.customers.refusals import counts_by_code
from app.customers.standing import standing
from app.db import iso, now_utc, row_id, session_writes
from app.errors import Conflict, DomainError
from app.extensions import db
from app.form_errors import show_refusal
from app.metering.credits import add_or_set
from app.models.catalog import Deployment, Model
from app.models.ledger import LedgerEntry
from app.models.tier import UsageTier
from app.models.usage import UsageRecord
from app.portal import links
from app.portal import views as portal

bp = Blueprint("customers", __name__, url_prefix="/customers")


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here needs a signed-in admin."""


def _list_page(
    new: NewCustomerForm,
    page: listing.Page | None = None,
    status: int = 200,
    approve: BulkApproveForm | None = None,
):
    query = listing.Query.from_args(request.args)
    page = page or listing.find(db.session, listing.current_project(db.session), query, now_utc())
    approve = approve or BulkApproveForm(
        None, approve_tokens=page.project.approval_tokens, approval_tokens=page.project.approval_tokens
    )
    return render_template("customers/index.html", page=page, query=query, new=new, approve=approve), status


def _new_customer_form(formdata=None) -> tuple[NewCustomerForm, listing.Page]:
    """The form with the project's tiers to choose from (the list page reads them anyway)."""
    project = listing.current_project(db.session)
    page = listing.find(db.session, project, listing.Query.from_args(request.args), now_utc())
    form = NewCustomerForm(formdata, tier=project.default_tier_id)
    form.tier.choices = [SelectChoice(str(t.id), f"{t.name} · {t.key} v{t.version}") for t in page.tiers]
    return form, page


@bp.route("")
def index():
    form, page = _new_customer_form()
    return _list_page(form, page)


@bp.route("", methods=["POST"])
@owner_required
def create():
    form, page = _new_customer_form(request.form)
    if not form.validate():
        return _list_page(form, page, 400)
    project = listing.current_project(db.session)
    fields = {"customer_id": form.customer_id.data.strip()}
    fields |= {"name": form.name.data} if form.name.data else {}  # none given: named by its id
    fields |= {"email": form.email.data} if form.email.data else {}
    fields |= {"token_balance": form.tokens.data} if form.tokens.data is not None else {}
    if form.tier.data != project.default_tier_id:  # new customers start on the default already
        tier = db.session.get(UsageTier, form.tier.data)
        fields["tier"] = {"key": tier.key, "version": tier.version}
    try:
        with session_writes(db.session):
            made = ops.create_customer(db.session, project, fields, _actor(), now_utc()).external_id
    except DomainError as refused:
        show_refusal(form, refused, fallback="customer_id", names={"token_balance": "tokens"})
        return _list_page(form, page, 400)
    flash(f"Customer {made} created.", "success")
    return redirect(url_for("customers.detail", customer_id=made))


BULK_MAX = 500  # customers one bulk approval may name (the queue shows 50 a page)


@bp.route("/approve", methods=["POST"])
@owner_required
def approve_selected():
    """Bulk approve from the approval queue: each chosen customer through `approve`, in one
    transaction; those approved since the list was shown are reported, the rest approved."""
    project = listing.current_project(db.session)
    form = BulkApproveForm(request.form, approval_tokens=project.approval_tokens)
    if not form.validate():
        new, page = _new_customer_form()
        return _list_page(new, page, 400, approve=form)
    chosen = list(dict.fromkeys(form.approve_ids.data or []))
    if not 0 < len(chosen) <= BULK_MAX:
        flash(f"Nothing was approved: tick from 1 to {BULK_MAX} customers to approve.", "error")
    else:
        tokens = form.approve_tokens.data
        with session_writes(db.session):
            found = ops.find_customers(db.session, project, chosen)
            names = {c: c.name for c in found}  # read now: approving expires the rows
            gone = sorted(set(chosen) - {c.external_id for c in found})
            done = ops.approve_many(db.session, project, found, tokens, _actor(), now_utc())
        approved = [names[c] for c in done.approved]
        skipped = [names[c] for c in done.not_awaiting] + gone
        _report_approvals(approved, skipped, tokens if tokens is not None else project.approval_tokens)
    return redirect(url_for("customers.index", **listing.Query.from_args(request.args).params()))


def _report_approvals(approved: list[str], skipped: list[str], tokens: int | None) -> None:
    if approved:
        plural = "customer" if len(approved) == 1 else "customers"
        flash(
            f"Approved {len(approved)} {plural} with {tokens:,} tokens each: {_names(approved)}.", "success"
        )
    if skipped:
        flash(f"Not approved, no longer awaiting approval: {_names(skipped)}.", "warning")


def _names(names: list[str], shown: int = 10) -> str:
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest} more" if rest > 0 else "")


TABS = ("details", "usage", "ledger", "requests")
PAGE = 100


def _customer(customer_id: str):
    return ops.find_customer(db.session, listing.current_project(db.session), customer_id)


def known_regions(project) -> frozenset[str]:
    """The regions the project's deployments are in: what a customer may be limited to."""
    rows = db.session.scalars(select(Deployment.region).join(Model).where(Model.project_id == project.id))
    return frozenset(rows)


def _forms(customer, project, formdata=None, which=None):
    """The page's three forms; only the one submitted reads the request."""
    details = DetailsForm(
        formdata if which == "details" else None,
        known_regions=known_regions(project),
        obj=None if which == "details" else _details_values(customer),
    )
    tokens = TokensForm(formdata if which == "tokens" else None)
    tier = TierForm(formdata if which == "tier" else None, tier=customer.tier_id)
    tier.tier.choices = [  # SelectChoice values are strings; the field coerces them back to ids
        SelectChoice(str(t.id), f"{t.name} · {t.key} v{t.version}")
        for t in db.session.scalars(
            select(UsageTier)
            .where(UsageTier.project_id == project.id)
            .order_by(UsageTier.key, UsageTier.version)
        )
    ]
    return details, tokens, tier


def _details_values(customer):
    class Values:
        name, alias, email = customer.name, customer.alias, customer.email
        shedding_tier, blocked = customer.shedding_tier, customer.blocked
        allowed_regions = ", ".join(customer.allowed_regions or [])

    return Values


def _newest_first(model, customer_pk: int) -> tuple[list, int | None]:
    """One page of a customer's rows, newest first, from `?before=<id>`; and the id to go on from."""
    before = row_id(request.args.get("before", ""))
    stmt = select(model).where(model.customer_id == customer_pk)
    if before is not None:
        stmt = stmt.where(model.id < before)
    rows = db.session.scalars(stmt.order_by(model.id.desc()).limit(PAGE + 1)).all()
    return rows[:PAGE], (rows[PAGE - 1].id if len(rows) > PAGE else None)


def _render(customer, tab, forms, status=200, approve: ApproveForm | None = None, **known):
    """The customer page; `known` may carry the `project` and `awaiting` the caller read already,
    and the `portal_link` just made."""
    project = known.get("project") or listing.current_project(db.session)
    details, tokens, tier = forms
    context = dict(
        customer=customer,
        tab=tab,
        project=project,
        details=details,
        tokens=tokens,
        tier_form=tier,
        portal_link=known.get("portal_link"),
    )
    awaiting = known.get("awaiting")
    context["awaiting"] = ops.is_awaiting(db.session, customer) if awaiting is None else awaiting
    context["approve"] = approve or ApproveForm(
        None, approve_tokens=project.approval_tokens, approval_tokens=project.approval_tokens
    )
    if tab == "usage":
        context["standing"] = standing(db.session, customer)
    elif tab == "ledger":
        context["entries"], context["older"] = _newest_first(LedgerEntry, customer.id)
        context["reconciled"] = reconcile(db.session, customer)
    elif tab == "requests":
        calls, context["older"] = _newest_first(UsageRecord, customer.id)
        before = row_id(request.args.get("before", ""))
        now = now_utc()
        context["lines"] = timeline.interleave(db.session, customer, calls, before, context["older"], now)
        context["refused_by_code"] = counts_by_code(db.session, customer, now)
    return render_template("customers/detail.html", **context), status


@bp.route("/<path:customer_id>")
def detail(customer_id):
    tab = request.args.get("tab", "details")
    if tab not in TABS:
        abort(404)
    project = listing.current_project(db.session)
    customer, awaiting = ops.find_customer_and_approval(db.session, project, customer_id)
    return _render(customer, tab, _forms(customer, project), project=project, awaiting=awaiting)


def _actor() -> str:
    return f"admin:{current_user.email}"


FORM_TABS = {"details": (0, "details"), "tokens": (1, "usage"), "tier": (2, "usage")}


def _submitted(customer_id: str, which: str):
    """The submitted form if it is valid, else also the page re-rendered with its errors (400)."""
    customer = _customer(customer_id)
    forms = _forms(customer, listing.current_project(db.session), request.form, which)
    index, tab = FORM_TABS[which]
    form = forms[index]
    return form, None if form.validate() else _render(customer, tab, forms, 400)


@bp.route("/<path:customer_id>/details", methods=["POST"])
@owner_required
def save_details(customer_id):
    form, refused = _submitted(customer_id, "details")
    if refused:
        return refused
    changes = {
        "name": form.name.data.strip(),
        "alias": form.alias.data or None,
        "email": form.email.data or None,
        "shedding_tier": form.shedding_tier.data,
        "allowed_regions": form.regions(),
        "blocked": form.blocked.data,
    }
    with session_writes(db.session):
        ops.update_customer(db.session, _customer(customer_id), changes, _actor(), now_utc())
    flash("Details saved.", "success")
    return redirect(url_for("customers.detail", customer_id=customer_id))


@bp.route("/<path:customer_id>/tokens", methods=["POST"])
@owner_required
def change_tokens(customer_id):
    form, refused = _submitted(customer_id, "tokens")
    if refused:
        return refused
    try:
        with session_writes(db.session):
            entry = add_or_set(
                db.session.connection(),
                _customer(customer_id).id,
                form.mode.data,
                form.amount.data,
                source=_actor(),
                reason=form.reason.data or "",
                now=now_utc(),
            )
    except DomainError as refused:
        show_refusal(form, refused, fallback="amount")
        customer = _customer(customer_id)
        details, _, tier = _forms(customer, listing.current_project(db.session))
        return _render(customer, "usage", (details, form, tier), 400)
    flash(f"Balance is now {entry.balance_after:,} tokens.", "success")
    return redirect(url_for("customers.detail", customer_id=customer_id, tab="usage"))


@bp.route("/<path:customer_id>/tier", methods=["POST"])
@owner_required
def change_tier(customer_id):
    form, refused = _submitted(customer_id, "tier")
    if refused:
        return refused
    with session_writes(db.session):
        target = db.session.get(UsageTier, form.tier.data)
        ops.assign_tier(db.session, _customer(customer_id), target, _actor(), now_utc())
    flash(f"Now on {target.name} (v{target.version}).", "success")
    return redirect(url_for("customers.detail", customer_id=customer_id, tab="usage"))


@bp.route("/<path:customer_id>/portal-link", methods=["POST"])
@owner_required
def create_portal_link(customer_id):
    """A 30-day link to the customer's usage page, shown in this answer only (nothing of it is kept)."""
    with session_writes(db.session):
        customer = _customer(customer_id)
        link = links.issue(
            db.session, customer, current_app.config["SECRET_KEY"], now_utc(), links.DAYS_DEFAULT
        )
    if request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json":
        # The page's script (static/js/usage_link.js): it shows and copies the link itself.
        return jsonify({"url": portal.address(link), "expires_at": iso(link.expires_at)}), 201
    forms = _forms(customer, listing.current_project(db.session))
    return _render(customer, "details", forms, 201, portal_link=(portal.address(link), link.expires_at))


@bp.route("/<path:customer_id>/portal-link/revoke", methods=["POST"])
@owner_required
def revoke_portal_links(customer_id):
    with session_writes(db.session):
        links.revoke_all(db.session, _customer(customer_id))
    flash("All usage links of this customer were revoked. Links made from now on work.", "success")
    return redirect(url_for("customers.detail", customer_id=customer_id))


@bp.route("/<path:customer_id>/approve", methods=["POST"])
@owner_required
def approve(customer_id):
    """Approve, as `POST /api/customers/{id}/approve` does: credit the tokens, `customer.approved`."""
    customer = _customer(customer_id)
    project = listing.current_project(db.session)
    form = ApproveForm(request.form, approval_tokens=project.approval_tokens)
    if not form.validate():
        return _render(customer, "details", _forms(customer, project), 400, approve=form)
    try:
        with session_writes(db.session):
            entry = ops.approve(db.session, project, customer, form.approve_tokens.data, _actor(), now_utc())
    except Conflict:
        form.form_errors.append("Nothing was credited: this customer is no longer awaiting approval.")
        customer = _customer(customer_id)
        return _render(customer, "details", _forms(customer, project), 409, approve=form)
    flash(f"Approved: {entry.amount:,} tokens credited, balance {entry.balance_after:,}.", "success")
    return redirect(url_for("customers.detail", customer_id=customer_id))
