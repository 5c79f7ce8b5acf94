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
    # Past 2**62 no column can hold it: a 422 naming the field, not a database error.
    return fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=-(2**62), max=2**62))


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


class LiteLLMKeyFields(LiteLLMBody):
    """The GenerateKeyRequest / UpdateKeyRequest fields Tollgate maps; the rest (`aliases`,
    `team_id`, `config`, `permissions`, `tags`, …) are accepted and ignored."""

    key_alias = fields.String(allow_none=True, validate=validate.Length(min=1, max=200))
    duration = fields.String(allow_none=True)
    models = fields.List(fields.String(validate=validate.Length(min=1, max=200)), allow_none=True)
    metadata = fields.Dict(allow_none=True)
    user_id = fields.String(allow_none=True, validate=validate.Length(max=256))
    rpm_limit = _count_field()
    tpm_limit = _count_field()
    max_parallel_requests = _count_field()
    max_budget = _usd_field()
    budget_duration = fields.String(allow_none=True)
    blocked = fields.Boolean(allow_none=True)


class LiteLLMGenerateKeyIn(LiteLLMKeyFields):
    """GenerateKeyRequest; `key` asks for that exact secret (16+ characters)."""

    key = fields.String(allow_none=True, validate=validate.Length(min=16, max=200))


class LiteLLMUpdateKeyIn(LiteLLMKeyFields):
    """UpdateKeyRequest: `key` is the secret or its hash (`token`)."""

    key = fields.String(required=True, validate=validate.Length(min=1, max=200))


class LiteLLMKeyIn(LiteLLMBody):
    """/key/block and /key/unblock."""

    key = fields.String(required=True, validate=validate.Length(min=1, max=200))


class LiteLLMKeyInfoArgs(Schema):
    key = fields.String(required=True, validate=validate.Length(min=1, max=200))


class LiteLLMKeyDeleteIn(LiteLLMBody):
    keys = fields.List(fields.String(validate=validate.Length(min=1, max=200)), allow_none=True)
    key_aliases = fields.List(fields.String(validate=validate.Length(min=1, max=200)), allow_none=True)


class LiteLLMKeyListArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    size = fields.Integer(load_default=10, validate=validate.Range(min=1, max=100))
    user_id = fields.String()
    key_alias = fields.String()
    return_full_object = fields.Boolean(load_default=False)


class LiteLLMKey(Schema):
    """A key as LiteLLM shows it (LiteLLM_VerificationToken), then Tollgate's own fields."""

    token = fields.String(required=True, metadata={"description": "the key's SHA-256 hash"})
    key_name = fields.String(required=True, metadata={"description": "the key, abbreviated"})
    key_alias = fields.String(allow_none=True)
    spend = fields.Float(required=True, metadata={"description": "USD: the budget window's, else lifetime"})
    max_budget = fields.Float(allow_none=True)
    budget_duration = fields.String(allow_none=True)
    budget_reset_at = fields.String(allow_none=True)
    expires = fields.String(allow_none=True)
    models = fields.List(fields.String(), required=True)
    metadata = fields.Dict(required=True)
    user_id = fields.String(allow_none=True)
    team_id = fields.String(allow_none=True)
    tpm_limit = fields.Integer(allow_none=True)
    rpm_limit = fields.Integer(allow_none=True)
    max_parallel_requests = fields.Integer(allow_none=True)
    blocked = fields.Boolean(required=True)
    created_at = fields.String(required=True)
    last_used_at = fields.String(allow_none=True)
    spend_usd = fields.String(required=True, metadata={"description": "the same spend, exact"})
    lifetime_spend_usd = fields.String(required=True)
    reserved_usd = fields.String(required=True, metadata={"description": "held by calls in flight"})


class LiteLLMGeneratedKey(LiteLLMKey):
    key = fields.String(required=True, metadata={"description": "the secret, shown this once"})


class LiteLLMKeyInfo(Schema):
    key = fields.String(required=True)
    info = fields.Nested(LiteLLMKey, required=True)


class LiteLLMKeysDeleted(Schema):
    deleted_keys = fields.List(fields.String(), required=True)


class LiteLLMKeyList(Schema):
    keys = fields.List(fields.Raw(), required=True, metadata={"description": "tokens, or keys"})
    total_count = fields.Integer(required=True)
    current_page = fields.Integer(required=True)
    total_pages = fields.Integer(required=True)
