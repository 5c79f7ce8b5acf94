"""The /key/… routes: LiteLLM's virtual keys as Tollgate proxy keys (SPEC 6.1).

A key is named by its secret or by its `token` (the SHA-256 hash LiteLLM shows, which is how
Tollgate stores keys too). `key_alias` is the key's name; a key generated without one is named by
its abbreviation (`key_name`). Deleting a key revokes it: its usage records keep naming it. Only
proxy keys are LiteLLM keys: the management API's admin keys are not listed or changed here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import g
from sqlalchemy import func, or_, select

from app.api.idempotency import idempotent
from app.api.keys import budget_reset_at
from app.api.litellm.blueprint import LiteLLMError, bp
from app.api.litellm.mapping import format_usd, parse_usd
from app.api.litellm.schemas import (
    LiteLLMGeneratedKey,
    LiteLLMGenerateKeyIn,
    LiteLLMKey,
    LiteLLMKeyDeleteIn,
    LiteLLMKeyIn,
    LiteLLMKeyInfo,
    LiteLLMKeyInfoArgs,
    LiteLLMKeyList,
    LiteLLMKeyListArgs,
    LiteLLMKeysDeleted,
    LiteLLMUpdateKeyIn,
)
from app.db import iso, now_utc, session_writes
from app.extensions import db
from app.keys import operations as ops
from app.metering.pricing import usd_str
from app.models.api_key import ApiKey, hash_key
from app.models.project import Project

NEVER = "-1"  # LiteLLM's duration for "does not expire"


def key_shapes(keys: list[ApiKey], now: datetime) -> list[dict[str, Any]]:
    figures = ops.spends(db.session, keys, now)
    return [_shape(k, *figures[k.id], now) for k in keys]


def _shape(key: ApiKey, spend: int, lifetime: int, now: datetime) -> dict[str, Any]:
    return {
        "token": key.key_hash,
        "key_name": f"{key.prefix}…",
        "key_alias": key.name,
        "spend": format_usd(spend),
        "max_budget": format_usd(key.max_budget_nusd),
        "budget_duration": key.budget_duration,
        "budget_reset_at": iso(budget_reset_at(key, now)),
        "expires": iso(key.expires_at),
        "models": list(key.models or []),
        "metadata": dict(key.metadata_ or {}),
        "user_id": key.user_id,
        "team_id": None,
        "tpm_limit": key.tpm_limit,
        "rpm_limit": key.rpm_limit,
        "max_parallel_requests": key.max_parallel_requests,
        "blocked": key.blocked,
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "spend_usd": usd_str(spend),
        "lifetime_spend_usd": usd_str(lifetime),
        "reserved_usd": usd_str(key.reserved_nusd),
    }


def _find(project: Project, named: str, param: str = "key") -> ApiKey:
    """A live proxy key of this project, by its secret or its token."""
    key = db.session.scalar(
        select(ApiKey).where(
            ApiKey.project_id == project.id,
            ApiKey.scope == "proxy",
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.key_hash == named, ApiKey.key_hash == hash_key(named)),
        )
    )
    if key is None:
        raise LiteLLMError(404, "Key not found in database. It is unknown or has been deleted.", param)
    return key


def _changes(args: dict, now: datetime) -> dict[str, Any]:
    """Tollgate key settings from a LiteLLM key body; a field left out (or null) stays as it is."""
    changes: dict[str, Any] = {}
    if args.get("key_alias") is not None:
        changes["name"] = args["key_alias"]
    if args.get("duration") is not None:
        changes["expires_at"] = None if args["duration"] == NEVER else ops.expiry(args["duration"], now)
    for name in ("models", "metadata", "user_id", "blocked", *ops.LIMITS):
        if args.get(name) is not None:
            changes[name] = args[name]
    if args.get("max_budget") is not None:
        changes["max_budget_nusd"] = parse_usd("max_budget", args["max_budget"])
    if args.get("budget_duration") is not None:
        changes["budget_duration"] = args["budget_duration"]
    return changes


def _check_alias(project: Project, changes: dict[str, Any], key_id: int | None = None) -> None:
    """A key_alias names one live key of the project (as LiteLLM requires): /key/delete and
    /key/list find keys by it."""
    alias = changes.get("name")
    if alias is None:
        return
    taken = db.session.scalar(
        _live_keys(project).where(ApiKey.name == alias, ApiKey.id != (key_id or 0)).limit(1)
    )
    if taken is not None:
        raise LiteLLMError(
            400, f"Key with alias {alias!r} already exists. Pass a new key_alias.", "key_alias"
        )


@bp.route("/key/generate", methods=["POST"])
@bp.arguments(LiteLLMGenerateKeyIn)
@bp.response(200, LiteLLMGeneratedKey)
def generate_key(args):
    """A new proxy key; the secret is in this answer only (as `key`). Not idempotent on purpose: a
    replayed answer would have to keep the secret."""
    project: Project = g.project
    now = now_utc()
    changes = _changes(args, now)
    with session_writes(db.session):
        _check_alias(project, changes)
        key, secret = ops.create_key(db.session, project, "LiteLLM key", "proxy", args.get("key"))
        changes.setdefault("name", f"{key.prefix}…")
        ops.configure_key(db.session, key, changes, now)
        body = {**key_shapes([key], now)[0], "key": secret}
    return body


@bp.route("/key/info", methods=["GET"])
@bp.arguments(LiteLLMKeyInfoArgs, location="query")
@bp.response(200, LiteLLMKeyInfo)
def key_info(args):
    key = _find(g.project, args["key"])
    return {"key": args["key"], "info": key_shapes([key], now_utc())[0]}


@bp.route("/key/update", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMUpdateKeyIn)
@bp.response(200, LiteLLMKey)
def update_key(args):
    now = now_utc()
    changes = _changes(args, now)

    def configure(key: ApiKey) -> None:
        _check_alias(g.project, changes, key.id)
        ops.configure_key(db.session, key, changes, now)

    return _change(args["key"], configure)


@bp.route("/key/delete", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMKeyDeleteIn)
@bp.response(200, LiteLLMKeysDeleted)
def delete_keys(args):
    """All or nothing: an unknown key or alias is a 404 and nothing is deleted."""
    project: Project = g.project
    named, aliases = args.get("keys") or [], args.get("key_aliases") or []
    if not named and not aliases:
        raise LiteLLMError(400, "Pass the keys to delete in keys (or key_aliases).", "keys")
    with session_writes(db.session):
        found = [_find(project, k, "keys") for k in named]
        for alias in aliases:
            matching = _live_keys(project).where(ApiKey.name == alias)
            keys = list(db.session.scalars(matching))
            if not keys:
                raise LiteLLMError(404, f"No key has the alias {alias!r}.", "key_aliases")
            found.extend(keys)
        for key in found:
            ops.revoke_key(db.session, key)
    return {"deleted_keys": [*named, *aliases]}


def _change(named: str, change: Callable[[ApiKey], object]) -> dict[str, Any]:
    """Change one key of this project in one transaction; answers it as it stands afterwards."""
    with session_writes(db.session):
        key = _find(g.project, named)
        change(key)
        body = key_shapes([key], now_utc())[0]
    return body


@bp.route("/key/block", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMKeyIn)
@bp.response(200, LiteLLMKey)
def block_key(args):
    """Every worker refuses the key within a second (401), until it is unblocked."""
    return _change(args["key"], lambda key: ops.set_blocked(db.session, key, True))


@bp.route("/key/unblock", methods=["POST"])
@idempotent
@bp.arguments(LiteLLMKeyIn)
@bp.response(200, LiteLLMKey)
def unblock_key(args):
    return _change(args["key"], lambda key: ops.set_blocked(db.session, key, False))


def _live_keys(project: Project):
    return select(ApiKey).where(
        ApiKey.project_id == project.id, ApiKey.scope == "proxy", ApiKey.revoked_at.is_(None)
    )


@bp.route("/key/list", methods=["GET"])
@bp.arguments(LiteLLMKeyListArgs, location="query")
@bp.response(200, LiteLLMKeyList)
def list_keys(args):
    """LiteLLM's pages (`page`, `size`): tokens, or whole keys with `return_full_object=true`."""
    query = _live_keys(g.project)
    if args.get("user_id") is not None:
        query = query.where(ApiKey.user_id == args["user_id"])
    if args.get("key_alias") is not None:
        query = query.where(ApiKey.name == args["key_alias"])
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page, size = args["page"], args["size"]
    keys = list(db.session.scalars(query.order_by(ApiKey.id).offset((page - 1) * size).limit(size)))
    shown = key_shapes(keys, now_utc()) if args["return_full_object"] else [k.key_hash for k in keys]
    return {
        "keys": shown,
        "total_count": total,
        "current_page": page,
        "total_pages": math.ceil(total / size),
    }
