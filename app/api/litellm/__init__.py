"""LiteLLM-compatible customer and budget routes (SPEC 6.1, reference/litellm-api.md).

Same paths, bodies and response fields as LiteLLM's proxy, mapped onto Tollgate:
- a LiteLLM *budget* is a usage tier: `budget_id` is the tier key, the budget row shows the key's
  latest version; budgets made here are not prepaid (`prepaid: false`);
- a LiteLLM *customer* (end user) is a Tollgate customer: `user_id` is its customer_id. A
  customer-level `max_budget` is stored on the customer (`max_budget_nusd`), never on a tier, and
  runs on its own `budget_duration` from when it was set;
- a LiteLLM *virtual key* is a Tollgate proxy key with its own limits, allow-list and $ budget.

Unlike LiteLLM: `blocked: false` and `max_budget: 0` are honoured, unblock really unblocks, and
`/budget/update` of a tier customers have used clones it and migrates its customers to the new
version, so the old version (and its history) is kept.

Errors answer the LiteLLM way: `{"error": {"message", "type", "param", "code": "<status>"}}`.
Every write accepts an `Idempotency-Key` header, as the rest of the management API (SPEC 6).

`blueprint` holds the blueprint and its errors; `schemas` the request and response bodies,
`mapping` LiteLLM's budget fields as tier fields, `shapes` the response bodies, `customers`,
`budgets` and `keys` the routes.
"""

from __future__ import annotations

from app.api.litellm.blueprint import PATH_PREFIXES, LiteLLMError, bp, http_error

__all__ = ["PATH_PREFIXES", "LiteLLMError", "bp", "http_error"]

# Importing the route modules registers their views on `bp`. Customers first: the OpenAPI document
# lists paths in the order they were registered.
from app.api.litellm import customers  # noqa: F401

# isort: split
from app.api.litellm import budgets  # noqa: F401

# isort: split
from app.api.litellm import keys  # noqa: F401
