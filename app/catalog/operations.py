"""Model and deployment operations. Operations flush; the caller commits."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import stamp
from app.crypto import seal
from app.errors import Invalid
from app.metering.pricing import MoneyError, to_nusd
from app.models.catalog import PROVIDERS, Deployment, Model, ModelTierDefault
from app.models.project import Project
from app.models.tier import MODEL_TIERS

REGION_MAX = 32


def _price(raw: object) -> tuple[int | None, int | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict) or set(raw) != {"input_per_mtok", "output_per_mtok"}:
        raise Invalid("price must be {input_per_mtok, output_per_mtok} in USD", "price")
    try:
        return to_nusd(raw["input_per_mtok"]), to_nusd(raw["output_per_mtok"])
    except MoneyError as exc:
        raise Invalid(f"price: {exc}", "price") from exc


def deployment_values(spec: dict[str, Any], secret_key: str) -> dict[str, Any]:
    provider = spec.get("provider")
    if provider not in PROVIDERS:
        raise Invalid(f"provider must be one of {', '.join(PROVIDERS)}", "provider")
    base_url = str(spec.get("base_url") or "")
    if provider != "mock" and urlparse(base_url).scheme not in ("http", "https"):
        raise Invalid("base_url must be an http(s) URL", "base_url")
    model = spec.get("model")
    if not isinstance(model, str) or not model:
        raise Invalid("model (the upstream model name) is required", "model")
    region = spec.get("region", "us")
    if not isinstance(region, str) or not region or len(region) > REGION_MAX:
        raise Invalid("region must be a short name such as us or eu", "region")
    values = dict(
        provider=provider,
        base_url=base_url.rstrip("/"),
        upstream_model=model,
        region=region,
        api_key=seal(secret_key, spec.get("api_key")),
        api_version=spec.get("api_version"),
    )
    for name, default, minimum, maximum in (("weight", 1, 0, 10**6), ("timeout_s", 600, 1, 86_400)):
        value = spec.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise Invalid(f"{name} must be a whole number from {minimum} to {maximum}", name)
        values[name] = value
    return values


def upsert_model(session: Session, project: Project, spec: dict[str, Any], secret_key: str) -> Model:
    """Create or replace a model and its deployments, as the config file says (the file wins)."""
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise Invalid("model name is required", "name")
    model_tier = spec.get("model_tier", "standard")
    if model_tier not in MODEL_TIERS:
        raise Invalid(f"model_tier must be one of {', '.join(MODEL_TIERS)}", "model_tier")
    price_in, price_out = _price(spec.get("price"))
    deployments = [deployment_values(d, secret_key) for d in spec.get("deployments") or []]
    model = session.scalar(select(Model).where(Model.project_id == project.id, Model.name == name))
    if model is None:
        model = Model(project_id=project.id, name=name)
        session.add(model)
    model.model_tier, model.input_nusd_per_mtok, model.output_nusd_per_mtok = model_tier, price_in, price_out
    model.deployments = [Deployment(**values) for values in deployments]
    stamp.bump(session)
    session.flush()
    return model


def set_tier_default(session: Session, project: Project, model_tier: str, model_name: str) -> None:
    if model_tier not in MODEL_TIERS:
        raise Invalid(f"unknown model tier {model_tier!r}", "model_tier_defaults")
    model = session.scalar(select(Model).where(Model.project_id == project.id, Model.name == model_name))
    if model is None:
        raise Invalid(f"model_tier_defaults names unknown model {model_name!r}", "model_tier_defaults")
    row = session.scalar(
        select(ModelTierDefault).where(
            ModelTierDefault.project_id == project.id, ModelTierDefault.model_tier == model_tier
        )
    )
    if row is None:
        session.add(ModelTierDefault(project_id=project.id, model_tier=model_tier, model_id=model.id))
    else:
        row.model_id = model.id
    stamp.bump(session)
    session.flush()
