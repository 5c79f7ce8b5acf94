"""Events: the append-only record that webhooks, Zapier and the admin read (SPEC 7.1)."""
