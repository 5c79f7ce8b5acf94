"""The ordered admission checks of SPEC 3.2, ahead of every forwarded call.

1 key and body, 2 customer, 3 blocked, 4 shedding, 5 model, 6 period rollover, 7 rate limits,
8 tier limits and budgets, 9 balance, 10 reservation, 11 region. Steps 4, 6, 7 and 8 arrive with
the usage-tier and shedding work; their places are marked below, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from app.db import write_transaction
from app.metering import estimate
from app.metering.accounts import open_account
from app.metering.quota import Ask, Hold, QuotaRefused, customers, release, reserve
from app.proxy.auth import Caller, DeploymentInfo, ModelInfo
from app.proxy.errors import ProxyError
from app.proxy.routing import in_regions

MAX_ID = 256
HOLD_GRACE = timedelta(minutes=10)


@dataclass(frozen=True)
class Who:
    customer_id: str | None
    name: str | None


@dataclass
class Admitted:
    caller: Caller
    who: Who
    model: ModelInfo
    hold: Hold | None
    deployments: list[DeploymentInfo]
    prompt: estimate.PromptEstimate


def _string_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID:
        raise ProxyError(
            "invalid_request",
            f"{field} must be a non-empty string of at most {MAX_ID} characters.",
            param=field,
        )
    return value


def identify(body: dict, headers) -> Who:
    """SPEC 3.1: body `customer`, then Tollgate's and LiteLLM's headers, then body `user`."""
    given = body.pop("customer", None)
    if given is not None:
        if not isinstance(given, dict) or "customer_id" not in given:
            raise ProxyError(
                "invalid_request", "customer must be an object with a customer_id.", param="customer"
            )
        name = given.get("customer_name")
        return Who(
            _string_id(given["customer_id"], "customer.customer_id"),
            _string_id(name, "customer.customer_name") if name is not None else None,
        )
    header = headers.get("X-Customer-Id")
    if header:
        name = headers.get("X-Customer-Name")
        return Who(_string_id(header, "X-Customer-Id"), _string_id(name, "X-Customer-Name") if name else None)
    for litellm in ("x-litellm-customer-id", "x-litellm-end-user-id"):
        if headers.get(litellm):
            return Who(_string_id(headers[litellm], litellm), None)
    user = body.get("user")
    if user is not None:
        return Who(_string_id(user, "user"), None)
    return Who(None, None)


def _open_if_missing(engine: Engine, caller: Caller, who: Who, now: datetime) -> None:
    assert who.customer_id is not None
    with write_transaction(engine) as conn:
        open_account(conn, caller.project.defaults, who.customer_id, who.name, now, source="proxy")


def _refuse_unknown_model(engine: Engine, caller: Caller, who: Who, model: str, now: datetime) -> ProxyError:
    """An unknown model still resolves the customer first, and a blocked one hears that first."""
    if who.customer_id is not None:
        _open_if_missing(engine, caller, who, now)
        with engine.connect() as conn:
            blocked = conn.execute(
                select(customers.c.blocked).where(
                    customers.c.project_id == caller.project.id, customers.c.external_id == who.customer_id
                )
            ).scalar()
        if blocked:
            return ProxyError("customer_blocked", f"Customer {who.customer_id} is blocked.")
    return ProxyError(
        "model_not_found",
        f"The model '{model}' does not exist or you do not have access to it.",
        param="model",
    )


def admit(engine: Engine, caller: Caller, body: dict, headers, endpoint: str, now: datetime) -> Admitted:
    who = identify(body, headers)
    if who.customer_id is None and caller.project.require_customer:
        raise ProxyError(
            "customer_required",
            "This project requires a customer: send customer.customer_id, X-Customer-Id or user.",
            param="customer",
        )
    model = caller.project.models.get(body["model"])
    if model is None:
        raise _refuse_unknown_model(engine, caller, who, body["model"], now)
    prompt = estimate.chat_prompt(body) if endpoint == "chat/completions" else estimate.embedding_input(body)
    hold = _hold(engine, caller, who, model, body, endpoint, prompt, now) if who.customer_id else None
    deployments = in_regions(model.deployments, hold.allowed_regions if hold else ())
    if not deployments:
        if hold is not None:
            release(engine, hold)
        raise ProxyError(
            "region_not_allowed",
            f"Model '{model.name}' has no deployment in the customer's "
            f"allowed regions ({', '.join(hold.allowed_regions if hold else ())}).",
        )
    return Admitted(caller, who, model, hold, deployments, prompt)


def _hold(
    engine: Engine,
    caller: Caller,
    who: Who,
    model: ModelInfo,
    body: dict,
    endpoint: str,
    prompt: estimate.PromptEstimate,
    now: datetime,
) -> Hold:
    assert who.customer_id is not None
    if endpoint == "chat/completions":
        _, completion = estimate.completion_request(body)
    else:
        completion = 0
    timeout = max((d.timeout_s for d in model.deployments), default=600)
    ask = Ask(
        caller.project.id,
        who.customer_id,
        prompt.upper,
        completion,
        now,
        now + timedelta(seconds=timeout) + HOLD_GRACE,
    )
    try:
        hold = reserve(engine, ask, caller.project.terms_of)
        if hold is None:
            _open_if_missing(engine, caller, who, now)
            hold = reserve(engine, ask, caller.project.terms_of)
    except QuotaRefused as refused:
        raise ProxyError(refused.code, refused.message) from refused
    if hold is None:  # deleted between creation and reservation
        raise ProxyError("invalid_request", f"Customer {who.customer_id} could not be created.")
    return hold
