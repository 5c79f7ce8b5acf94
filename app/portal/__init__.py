"""The customer usage page (SPEC 10): signed, expiring, revocable links to a read-only page."""
