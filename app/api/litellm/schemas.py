"""The marshmallow schemas of the LiteLLM routes: LiteLLM's request bodies, and its response fields
followed by Tollgate's own."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

REGIONS = ("eu", "us")


class LiteLLMBody(Schema):
    class Meta:
        unknown = EXCLUDE  # LiteLLM clients send fields Tollgate has no use for


def _usd_field() -> fields.Float:
    # NaN and infinities are let through so the view refuses them with LiteLLM's 400 and message.
    return fields.Float(allow_none=True, allow_nan=True)


def _count_field() -> fields.Integer:
    return fields.Integer(allow_none=True, strict=True)


class LiteLLMBudgetIn(LiteLLMBody):
    """BudgetNewRequest."""

    budget_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=64))
    max_budget = _usd_field()
    soft_budget = _usd_field()
    max_parallel_requests = _count_field()
    tpm_limit = _count_field()
    rpm_limit = _count_field()
    budget_duration = fields.String(allow_none=True)
    model_max_budget = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), allow_none=True)
    budget_reset_at = fields.Raw(allow_none=True)  # accepted; Tollgate computes resets from the period


class LiteLLMCustomerFields(LiteLLMBudgetIn):
    user_id = fields.String(required=True, validate=validate.Length(min=1, max=256))
    alias = fields.String(allow_none=True, validate=validate.Length(max=256))
    blocked = fields.Boolean(allow_none=True)
    allowed_model_region = fields.String(allow_none=True, validate=validate.OneOf(REGIONS))
    default_model = fields.String(allow_none=True, validate=validate.Length(min=1, max=200))


class LiteLLMNewCustomerIn(LiteLLMCustomerFields):
    """NewCustomerRequest."""

    spend = fields.Float(allow_none=True)  # LiteLLM's initial spend: accepted, not used


class LiteLLMUpdateCustomerIn(LiteLLMCustomerFields):
    """UpdateCustomerRequest."""


class LiteLLMUserIdsIn(LiteLLMBody):
    """DeleteCustomerRequest and BlockUsers."""

    user_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=256)),
        required=True,
        validate=validate.Length(max=1000),
    )


class LiteLLMInfoArgs(LiteLLMBody):
    end_user_id = fields.String(required=True, validate=validate.Length(min=1, max=256))


class LiteLLMBudgetsIn(LiteLLMBody):
    """BudgetRequest."""

    budgets = fields.List(fields.String(), required=True, validate=validate.Length(max=1000))


class LiteLLMBudgetDeleteIn(LiteLLMBody):
    """BudgetDeleteRequest."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class LiteLLMTierRef(Schema):
    key = fields.String()
    version = fields.Integer()


class LiteLLMBudgetRow(Schema):
    """litellm_budget_table, plus the Tollgate tier version it shows."""

    budget_id = fields.String(allow_none=True)
    soft_budget = fields.Float(allow_none=True)
    max_budget = fields.Float(allow_none=True)
    max_parallel_requests = fields.Integer(allow_none=True)
    tpm_limit = fields.Integer(allow_none=True)
    rpm_limit = fields.Integer(allow_none=True)
    model_max_budget = fields.Dict(allow_none=True)
    budget_duration = fields.String(allow_none=True)
    budget_reset_at = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    usage_tier = fields.Nested(LiteLLMTierRef, allow_none=True)


class LiteLLMCustomer(Schema):
    """LiteLLM's customer (end user) fields, then Tollgate's own."""

    user_id = fields.String(required=True)
    blocked = fields.Boolean(required=True)
    alias = fields.String(allow_none=True)
    spend = fields.Float(required=True, metadata={"description": "USD: current period, else lifetime"})
    allowed_model_region = fields.String(allow_none=True)
    default_model = fields.String(allow_none=True)
    budget_id = fields.String(allow_none=True)
    litellm_budget_table = fields.Nested(LiteLLMBudgetRow, allow_none=True)
    name = fields.String(required=True)
    token_balance = fields.Integer(required=True)
    usage_tier = fields.Nested(LiteLLMTierRef, allow_none=True)
    max_budget_usd = fields.String(allow_none=True, metadata={"description": "the customer's own budget"})
    budget_set_at = fields.String(
        allow_none=True, metadata={"description": "when the own budget's period started running"}
    )


class LiteLLMBlocked(Schema):
    blocked_users = fields.List(fields.Nested(LiteLLMCustomer), required=True)


class LiteLLMUnblocked(Schema):
    blocked_users = fields.List(fields.String(), required=True)


class LiteLLMDeleted(Schema):
    deleted_customers = fields.Integer(required=True)
    message = fields.String(required=True)
