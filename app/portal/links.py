"""Portal links (SPEC 10): a token naming the customer and its own expiry, signed with the app's
secret and the customer's own; drawing a new customer secret revokes every link at once.

Nothing of a link is stored: a link is valid while its signature matches the customer's current
secret and its expiry has not passed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db import MAX_ROW_ID
from app.models.customer import Customer

SALT = "tollgate.portal-link"
LONGEST = 200  # a real token is about 90 characters; anything much longer is not one
DAYS_DEFAULT, DAYS_MOST = 30, 365


@dataclass(frozen=True)
class Link:
    token: str
    expires_at: datetime


def _signer(app_secret: str, customer_secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(
        f"{app_secret}:{customer_secret}", salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
    )


def issue(session: Session, customer: Customer, app_secret: str, now: datetime, days: int) -> Link:
    """A link to the customer's usage page, valid for `days` from `now`."""
    expires_at = (now + timedelta(days=days)).replace(microsecond=0)
    claims = {"c": customer.id, "e": int(expires_at.timestamp())}
    return Link(_signer(app_secret, _secret(session, customer)).dumps(claims), expires_at)


def _secret(session: Session, customer: Customer) -> str:
    """The customer's link secret, drawn on its first link. Two first links at once draw one
    secret between them (the conditional update), so neither is born revoked."""
    if customer.portal_secret is None:
        session.execute(
            update(Customer)
            .where(Customer.id == customer.id, Customer.portal_secret.is_(None))
            .values(portal_secret=secrets.token_urlsafe(32))
            .execution_options(synchronize_session=False)
        )
        session.refresh(customer, ["portal_secret"])
    assert customer.portal_secret is not None
    return customer.portal_secret


def revoke_all(session: Session, customer: Customer) -> None:
    """Every link of the customer stops working: they were signed with the secret replaced here."""
    customer.portal_secret = secrets.token_urlsafe(32)
    session.flush()


def resolve(session: Session, app_secret: str, token: str, now: datetime) -> Customer | None:
    """The customer a link is for, or None when it is altered, revoked or expired (or garbage:
    callers answer all of these alike)."""
    claims = _claims(token)
    if claims is None:
        return None
    customer_pk, expires = claims
    customer = session.get(Customer, customer_pk)
    if customer is None or customer.portal_secret is None or expires <= now.timestamp():
        return None
    signer = _signer(app_secret, customer.portal_secret)
    try:
        verified = signer.loads(token)
    except BadSignature:
        return None
    # base64 leaves the last character's low bits free: an altered last character can decode to
    # the same signature. Only the one spelling this server makes is a link.
    if signer.dumps(verified) != token:
        return None
    return customer


def _claims(token: str) -> tuple[int, int] | None:
    """(customer row id, expiry as a Unix time) as the token says, before any check of its signature."""
    if not (0 < len(token) <= LONGEST and token.isascii()):
        return None
    _, claims = URLSafeSerializer("unverified", salt=SALT).loads_unsafe(token)
    if not isinstance(claims, dict):
        return None
    customer_pk, expires = claims.get("c"), claims.get("e")
    if type(customer_pk) is not int or type(expires) is not int or not 0 < customer_pk <= MAX_ROW_ID:
        return None
    return customer_pk, expires
