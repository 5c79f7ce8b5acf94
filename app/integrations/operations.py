"""The project's Stripe settings (SPEC 7.5): signing secret and API key (stored encrypted, never
shown again) and the price map. They flush; the caller commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.crypto import seal
from app.errors import Invalid
from app.integrations import price_map
from app.models.project import Project
from app.models.tier import UsageTier

KEEP = object()  # a secret left as it is
MAX_SECRET = 500


def configure_stripe(
    session: Session,
    project: Project,
    secret_key: str,
    *,
    webhook_secret: object = KEEP,
    api_key: object = KEEP,
    prices: object = KEEP,
) -> None:
    """Set what is given: a secret or key (None removes it), the whole price map."""
    if webhook_secret is not KEEP:
        project.stripe_webhook_secret = seal(secret_key, _secret(webhook_secret, "webhook_secret", "whsec_"))
    if api_key is not KEEP:
        project.stripe_api_key = seal(secret_key, _secret(api_key, "api_key", ("sk_", "rk_")))
    if prices is not KEEP:
        project.stripe_prices = price_map.parse(prices, tier_keys(session, project))
    session.flush()


def tier_keys(session: Session, project: Project) -> set[str]:
    return set(session.scalars(select(UsageTier.key).where(UsageTier.project_id == project.id)))


def _secret(value: object, field: str, prefixes: str | tuple[str, ...]) -> str | None:
    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else ""
    if not text.startswith(prefixes) or len(text) > MAX_SECRET or any(c.isspace() for c in text):
        shown = prefixes if isinstance(prefixes, str) else " or ".join(prefixes)
        raise Invalid(f"{field}: Stripe's begins with {shown} (copy it from Stripe's dashboard)", field)
    return text
