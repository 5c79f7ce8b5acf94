"""Cookie sessions for the browser admin only.

The proxy, the JSON API and the probes authenticate every call with a key: they get no session,
so they pay nothing to decode one and their answers carry no `Vary: Cookie`.
"""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

# The proxy's endpoints: /v1, and LiteLLM's unprefixed aliases (SPEC 3). GET /models is shared
# with the admin's models page and told apart by the caller's key (app._models_for_keys).
PROXY_PATHS = ("/v1/", "/chat/completions", "/embeddings", "/messages", "/responses")
# Stripe's webhook authenticates by its signature (the admin's own Integrations pages are
# /integrations and /integrations/stripe-…, which keep their sessions).
STRIPE_WEBHOOKS = "/integrations/stripe/"
SESSIONLESS = (*PROXY_PATHS, "/api/", "/healthz", "/readyz", "/metrics", STRIPE_WEBHOOKS)
# The customer usage page is for browsers but never the admin's: it neither reads nor sets its cookie.
PORTAL = "/portal/"


class AdminOnlySessions(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith((*SESSIONLESS, PORTAL)):
            return None  # Flask substitutes a null session, which is never saved
        return super().open_session(app, request)
