"""The admin's Integrations page (SPEC 10): webhook subscriptions and their deliveries, LiteLLM's
webhook, and how to connect Zapier."""
