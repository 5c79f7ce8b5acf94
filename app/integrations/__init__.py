"""The admin's Integrations page (SPEC 10): webhook subscriptions and their deliveries, and
LiteLLM's webhook."""
