"""Who calls the API: an admin-scope key of a project, or the master key (SPEC 1)."""

from __future__ import annotations

import json

from flask import g, request

from app.api.errors import ApiError
from app.extensions import db
from app.models.project import Project
from app.proxy.errors import ProxyError
from app.proxy.gateway import gateway


def require_admin() -> None:
    """before_request of every API blueprint: g.project is the caller's project."""
    refuse_nul()
    try:
        caller = gateway().caller(request.headers)
    except ProxyError as err:
        raise ApiError(401, err.message) from err
    if caller.scope != "admin":
        raise ApiError(403, "This key may call the proxy only; the management API needs an admin key.")
    project = db.session.get(Project, caller.project.id)
    if project is None:
        raise ApiError(401, "The key's project no longer exists.")
    g.caller, g.project = caller, project


def refuse_nul() -> None:
    """No string the API stores may hold a NUL character (PostgreSQL text cannot) or half of a
    UTF-16 surrogate pair (no UTF-8 text can): 400, not 500."""
    body = request.get_data(cache=True)
    if "\x00" in request.path or b"%00" in request.query_string or b"\x00" in body or b"\\u0000" in body:
        raise ApiError(400, "Strings may not contain NUL (\\u0000) characters.")
    if b"\\ud" in body.lower() and not _utf8(body):
        raise ApiError(400, "Strings may not contain unpaired UTF-16 surrogates (\\ud800-\\udfff).")


def _utf8(body: bytes) -> bool:
    """Every string in a JSON body can be stored as UTF-8 (a body that is not JSON is not judged here)."""
    try:
        json.dumps(json.loads(body), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    except (ValueError, RecursionError):
        pass
    return True
