"""Model and deployment operations, shared by the config file, the CLI and the admin.

Operations flush; the caller commits. Each one bumps the config stamp, so every proxy process
serves the change within about a second.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import stamp
from app.crypto import seal
from app.errors import Conflict, Invalid, NotFound
from app.metering.pricing import MoneyError, to_nusd
from app.models.catalog import PROVIDERS, Deployment, Model, ModelTierDefault
from app.models.project import Project
from app.models.tier import MODEL_TIERS

NAME_MAX = 200
API_VERSION_MAX = 32
# No spaces or commas: the admin takes a customer's allowed regions as a comma-separated list.
REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
PRICE_KEYS = ("input_per_mtok", "output_per_mtok")


def _price(raw: object) -> tuple[int | None, int | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict) or set(raw) != set(PRICE_KEYS):
        raise Invalid("price must be {input_per_mtok, output_per_mtok} in USD", "price")
    return _per_mtok(raw, "input_per_mtok"), _per_mtok(raw, "output_per_mtok")


def _per_mtok(raw: dict, key: str) -> int:
    try:
        return to_nusd(raw[key])
    except MoneyError as exc:
        raise Invalid(f"price {key}: {exc}", key) from exc


def _name(raw: object, field: str, what: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid(f"{what} is required", field)
    if raw != raw.strip() or len(raw) > NAME_MAX:
        raise Invalid(f"{what} must be at most {NAME_MAX} characters, without surrounding spaces", field)
    return raw


def _model_tier(raw: object) -> str:
    if raw not in MODEL_TIERS:
        raise Invalid(f"model_tier must be one of {', '.join(MODEL_TIERS)}", "model_tier")
    return str(raw)


def _base_url(provider: str, raw: object) -> str:
    base_url = raw.strip() if isinstance(raw, str) else ""
    if provider == "mock":
        return base_url.rstrip("/")
    parts = urlparse(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in base_url):
        raise Invalid("base_url must be an http(s) URL", "base_url")
    return base_url.rstrip("/")


def _region(raw: object) -> str:
    if not isinstance(raw, str) or not REGION.fullmatch(raw):
        raise Invalid("region must be a short name such as us or eu (letters, digits, . _ -)", "region")
    return raw


def _api_version(raw: object) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > API_VERSION_MAX:
        raise Invalid(f"api_version must be text of at most {API_VERSION_MAX} characters", "api_version")
    return raw


def _api_key(raw: object) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise Invalid("api_key must be text", "api_key")
    return raw


def deployment_values(spec: dict[str, Any], secret_key: str) -> dict[str, Any]:
    """Validate one deployment (the config file's shape) into column values, the secret sealed."""
    provider = spec.get("provider")
    if provider not in PROVIDERS:
        raise Invalid(f"provider must be one of {', '.join(PROVIDERS)}", "provider")
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Invalid("enabled must be true or false", "enabled")
    values = dict(
        provider=provider,
        base_url=_base_url(provider, spec.get("base_url")),
        upstream_model=_name(spec.get("model"), "model", "model (the upstream model name)"),
        region=_region(spec.get("region", "us")),
        api_key=seal(secret_key, _api_key(spec.get("api_key"))),
        api_version=_api_version(spec.get("api_version")),
        enabled=enabled,
    )
    for name, default, minimum, maximum in (("weight", 1, 0, 10**6), ("timeout_s", 600, 1, 86_400)):
        value = spec.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise Invalid(f"{name} must be a whole number from {minimum} to {maximum}", name)
        values[name] = value
    return values


def _changed(session: Session) -> None:
    stamp.bump(session)
    session.flush()


def upsert_model(session: Session, project: Project, spec: dict[str, Any], secret_key: str) -> Model:
    """Create or replace a model and its deployments, as the config file says (the file wins)."""
    name = _name(spec.get("name"), "name", "model name")
    model_tier = _model_tier(spec.get("model_tier", "standard"))
    price_in, price_out = _price(spec.get("price"))
    deployments = [deployment_values(d, secret_key) for d in spec.get("deployments") or []]
    model = session.scalar(select(Model).where(Model.project_id == project.id, Model.name == name))
    if model is None:
        model = Model(project_id=project.id, name=name)
        session.add(model)
    model.model_tier, model.input_nusd_per_mtok, model.output_nusd_per_mtok = model_tier, price_in, price_out
    model.deployments = _kept(list(model.deployments), deployments)
    _changed(session)
    return model


def _kept(existing: list[Deployment], wanted: list[dict]) -> list[Deployment]:
    """The file's deployments, each one that was there already kept (same provider, base URL,
    upstream model and region) and updated in place: its id, and with it its health, its usage
    records' link and its breaker, last across every apply of an unchanged file."""
    kept = []
    for values in wanted:
        key = (values["provider"], values["base_url"], values["upstream_model"], values["region"])
        same = next(
            (d for d in existing if (d.provider, d.base_url, d.upstream_model, d.region) == key), None
        )
        if same is None:
            kept.append(Deployment(**values))
            continue
        existing.remove(same)
        for name, value in values.items():
            setattr(same, name, value)
        kept.append(same)
    return kept


def find_model(session: Session, project: Project, model_id: int) -> Model:
    model = session.get(Model, model_id)
    if model is None or model.project_id != project.id:
        raise NotFound(f"no model {model_id} in this project", "model")
    return model


def create_model(session: Session, project: Project, spec: dict[str, Any]) -> Model:
    """A new model, with no deployments yet. Unlike upsert_model, an existing name is refused."""
    name = _name(spec.get("name"), "name", "model name")
    model_tier = _model_tier(spec.get("model_tier", "standard"))
    price_in, price_out = _price(spec.get("price"))
    taken = f"a model named {name!r} already exists in this project"
    if session.scalar(select(Model.id).where(Model.project_id == project.id, Model.name == name)):
        raise Conflict(taken, "name")
    model = Model(
        project_id=project.id,
        name=name,
        model_tier=model_tier,
        input_nusd_per_mtok=price_in,
        output_nusd_per_mtok=price_out,
    )
    session.add(model)
    try:
        _changed(session)
    except IntegrityError as exc:  # a concurrent create of the same name won the race
        raise Conflict(taken, "name") from exc
    return model


def update_model(session: Session, model: Model, spec: dict[str, Any]) -> None:
    """Set a model's tier and price; a `price` of None means genai-prices' price, else unpriced."""
    model_tier = _model_tier(spec.get("model_tier"))
    price_in, price_out = _price(spec.get("price"))
    model.model_tier, model.input_nusd_per_mtok, model.output_nusd_per_mtok = model_tier, price_in, price_out
    _changed(session)


def delete_model(session: Session, model: Model) -> None:
    """Delete a model with its deployments; a model tier it was the default of has none after."""
    session.execute(delete(ModelTierDefault).where(ModelTierDefault.model_id == model.id))
    session.delete(model)
    _changed(session)


def find_deployment(session: Session, model: Model, deployment_id: int) -> Deployment:
    deployment = session.get(Deployment, deployment_id)
    if deployment is None or deployment.model_id != model.id:
        raise NotFound(f"no deployment {deployment_id} for model {model.name!r}", "deployment")
    return deployment


def add_deployment(session: Session, model: Model, spec: dict[str, Any], secret_key: str) -> Deployment:
    deployment = Deployment(model_id=model.id, **deployment_values(spec, secret_key))
    session.add(deployment)
    _changed(session)
    return deployment


def update_deployment(
    session: Session, deployment: Deployment, spec: dict[str, Any], secret_key: str
) -> None:
    """Replace a deployment's settings. Without an `api_key` entry the stored secret is kept
    (the admin never sees it to send it back); `api_key: None` removes it."""
    values = deployment_values(spec, secret_key)
    if "api_key" not in spec:
        del values["api_key"]
    for name, value in values.items():
        setattr(deployment, name, value)
    _changed(session)


def remove_deployment(session: Session, deployment: Deployment) -> None:
    session.delete(deployment)
    _changed(session)


def _tier_default(session: Session, project: Project, model_tier: str) -> ModelTierDefault | None:
    return session.scalar(
        select(ModelTierDefault).where(
            ModelTierDefault.project_id == project.id, ModelTierDefault.model_tier == model_tier
        )
    )


def set_tier_default(session: Session, project: Project, model_tier: str, model_name: str) -> None:
    """Make `model_name` what a tier's `restrict` to `model_tier` serves."""
    if model_tier not in MODEL_TIERS:
        raise Invalid(f"unknown model tier {model_tier!r}", "model_tier_defaults")
    model = session.scalar(select(Model).where(Model.project_id == project.id, Model.name == model_name))
    if model is None:
        raise Invalid(f"model_tier_defaults names unknown model {model_name!r}", "model_tier_defaults")
    row = _tier_default(session, project, model_tier)
    if row is None:
        session.add(ModelTierDefault(project_id=project.id, model_tier=model_tier, model_id=model.id))
    else:
        row.model_id = model.id
    _changed(session)


def set_tier_defaults(session: Session, project: Project, choices: Mapping[str, str | None]) -> None:
    """Set the default model of each given model tier; None leaves that tier without one."""
    for model_tier, model_name in choices.items():
        if model_name is not None:
            set_tier_default(session, project, model_tier, model_name)
            continue
        if model_tier not in MODEL_TIERS:
            raise Invalid(f"unknown model tier {model_tier!r}", "model_tier_defaults")
        row = _tier_default(session, project, model_tier)
        if row is not None:
            session.delete(row)
    _changed(session)
