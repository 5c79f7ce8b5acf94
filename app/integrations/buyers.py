"""Who a Stripe purchase is for (SPEC 7.5): the first rule that names an existing customer, in
order, else a new customer with the first id the purchase carries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.customers.operations import create_customer, find_customer
from app.errors import Conflict
from app.integrations.objects import mapping, stripe_id, text
from app.integrations.received import Received
from app.models.customer import Customer
from app.models.project import Project

MAX_ID, MAX_EMAIL, MAX_NAME = 256, 320, 256  # the customers table's columns
MAX_STRIPE_CUSTOMER = 64


@dataclass(frozen=True)
class Buyer:
    """What a session, invoice or subscription says about its buyer."""

    metadata_id: str | None = None  # metadata.tollgate_customer_id
    reference: str | None = None  # client_reference_id
    stripe_customer: str | None = None  # cus_…
    email: str | None = None
    name: str | None = None

    @classmethod
    def of(cls, obj: dict, details: dict | None = None, email: object = None) -> Buyer:
        details = details or {}
        return cls(
            metadata_id=_id(mapping(obj.get("metadata")).get("tollgate_customer_id")),
            reference=_id(obj.get("client_reference_id")),
            stripe_customer=stripe_id(obj.get("customer"), MAX_STRIPE_CUSTOMER),
            email=_email(details.get("email") or email),
            name=text(details.get("name"), MAX_NAME),
        )

    @property
    def new_id(self) -> str | None:
        """The id a new customer gets: metadata's, else the client reference, else Stripe's."""
        return self.metadata_id or self.reference or self.stripe_customer

    def describe(self) -> str:
        named = [
            f"metadata.tollgate_customer_id {self.metadata_id!r}" if self.metadata_id else "",
            f"client_reference_id {self.reference!r}" if self.reference else "",
            f"Stripe customer {self.stripe_customer}" if self.stripe_customer else "",
            f"email {self.email}" if self.email else "",
        ]
        return ", ".join(n for n in named if n) or "no customer id, Stripe customer or email"


def find(session: Session, project: Project, buyer: Buyer) -> Customer | None:
    """The customer the first applicable rule names: metadata id, client reference, the linked
    Stripe customer, the same email (the oldest such customer)."""
    for customer_id in (buyer.metadata_id, buyer.reference):
        if customer_id and (found := _by_id(session, project, customer_id)) is not None:
            return found
    scope = select(Customer).where(Customer.project_id == project.id).order_by(Customer.id).limit(1)
    if buyer.stripe_customer:
        found = session.scalar(scope.where(Customer.stripe_customer_id == buyer.stripe_customer))
        if found is not None:
            return found
    if buyer.email:
        return session.scalar(scope.where(func.lower(Customer.email) == buyer.email))
    return None


def find_or_create(
    session: Session, project: Project, buyer: Buyer, source: str, now: datetime
) -> Customer | None:
    """`find`, else a new customer with the project's defaults (None: the purchase names no id)."""
    found = find(session, project, buyer)
    if found is not None or buyer.new_id is None:
        return found
    fields = {"customer_id": buyer.new_id, "name": buyer.name or buyer.new_id}
    if buyer.email:
        fields["email"] = buyer.email
    try:
        return create_customer(session, project, fields, source, now)
    except Conflict:  # made by a concurrent first call or purchase a moment ago
        return find_customer(session, project, buyer.new_id)


def _by_id(session: Session, project: Project, customer_id: str) -> Customer | None:
    return session.scalar(
        select(Customer).where(Customer.project_id == project.id, Customer.external_id == customer_id)
    )


def _id(value: object) -> str | None:
    found = text(value, MAX_ID + 1)
    return found if found and len(found) <= MAX_ID else None


def _email(value: object) -> str | None:
    found = text(value, MAX_EMAIL + 1)
    return found.lower() if found and "@" in found and len(found) <= MAX_EMAIL else None


def nobody(buyer: Buyer) -> Received:
    return Received(
        "needs_review",
        f"no customer to credit: the session names {buyer.describe()}, and no customer matches "
        "(set client_reference_id on the Payment Link or Checkout Session)",
    )
