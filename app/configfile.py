"""The YAML config file (SPEC 9): models and deployments upserted on every apply (the file wins);
projects, tiers, settings, keys and Stripe settings created when missing and never overwritten."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.catalog.operations import set_tier_default, upsert_model
from app.errors import Invalid
from app.integrations.operations import configure_stripe
from app.keys.operations import create_key
from app.models.api_key import ApiKey, hash_key
from app.models.tier import UsageTier
from app.projects.operations import create_project, find_project
from app.settings.operations import apply_settings
from app.tiers.operations import create_tier

PROJECT_FIELDS = {"slug", "name", "settings", "models", "model_tier_defaults", "tiers", "api_keys", "stripe"}


def read(path: str | Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise Invalid(
            f"cannot read config file {path}: {exc}".replace('"<unicode string>"', str(path))
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("projects", []), list):
        raise Invalid("the config file must be a mapping with a list under 'projects'")
    return data


def resolve(value: Any, env: Mapping[str, str], where: str) -> Any:
    """`env:NAME` takes the value from the environment; anything else is literal."""
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in env:
            raise Invalid(f"environment variable {name} is not set")
        return env[name]
    return value


def apply(session: Session, data: dict, secret_key: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Apply the whole file in the caller's transaction; returns what changed, for the log."""
    env = os.environ if env is None else env
    done: list[str] = []
    for i, spec in enumerate(data.get("projects") or []):
        where = f"projects[{i}]"
        try:
            done += _project(session, spec, secret_key, env, where)
        except Invalid as exc:
            raise Invalid(f"{where}: {exc.message}", exc.field) from exc
    return done


def _project(session: Session, spec: dict, secret_key: str, env: Mapping[str, str], where: str) -> list[str]:
    if not isinstance(spec, dict) or not isinstance(spec.get("slug"), str):
        raise Invalid("each project needs a slug")
    unknown = set(spec) - PROJECT_FIELDS
    if unknown:
        raise Invalid(f"unknown keys {sorted(unknown)}")
    done = []
    project = find_project(session, spec["slug"])
    created = project is None
    if project is None:
        project = create_project(session, spec["slug"], spec.get("name") or spec["slug"])
        done.append(f"created project {project.slug}")
    for t in spec.get("tiers") or []:
        if not isinstance(t, dict):
            raise Invalid("each tier must be a mapping")
        exists = session.scalar(
            select(UsageTier.id).where(UsageTier.project_id == project.id, UsageTier.key == t.get("key"))
        )
        if exists is None:
            create_tier(session, project, t)
            done.append(f"created tier {t.get('key')}")
    for m in spec.get("models") or []:
        if not isinstance(m, dict):
            raise Invalid("each model must be a mapping")
        m = dict(m, deployments=[_resolved_deployment(d, env, where) for d in m.get("deployments") or []])
        upsert_model(session, project, m, secret_key)
        done.append(f"upserted model {m.get('name')}")
    for model_tier, model_name in (spec.get("model_tier_defaults") or {}).items():
        set_tier_default(session, project, model_tier, model_name)
    if created:
        apply_settings(session, project, spec.get("settings") or {})
        _stripe(session, project, spec.get("stripe"), secret_key, env, where)
    elif spec.get("settings") or spec.get("stripe"):
        done.append(f"kept the settings of existing project {project.slug} (the admin owns them)")
    for k in spec.get("api_keys") or []:
        done += _key(session, project, k, env, where)
    return done


def _resolved_deployment(d: object, env: Mapping[str, str], where: str) -> dict:
    if not isinstance(d, dict):
        raise Invalid("each deployment must be a mapping")
    return {k: resolve(v, env, where) for k, v in d.items()}


def _key(session: Session, project, spec: object, env: Mapping[str, str], where: str) -> list[str]:
    if not isinstance(spec, dict) or "key" not in spec:
        raise Invalid("each api key needs name, scope and key")
    raw = resolve(spec["key"], env, where)
    if not isinstance(raw, str):
        raise Invalid("api key must be a string")
    if session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(raw))) is not None:
        return []
    create_key(session, project, str(spec.get("name") or "config"), spec.get("scope", "proxy"), raw)
    return [f"created key {spec.get('name')}"]


def _stripe(
    session: Session, project, spec: object, secret_key: str, env: Mapping[str, str], where: str
) -> None:
    if spec is None:
        return
    if not isinstance(spec, dict) or set(spec) - {"webhook_secret", "api_key", "prices"}:
        raise Invalid("stripe must be a mapping of webhook_secret, api_key and prices")
    try:
        configure_stripe(
            session,
            project,
            secret_key,
            webhook_secret=resolve(spec.get("webhook_secret"), env, where),
            api_key=resolve(spec.get("api_key"), env, where),
            prices=spec.get("prices") or {},
        )
    except Invalid as exc:
        raise Invalid(f"stripe.{exc.message}") from exc
