"""API keys: creation (shown once) and revocation."""
