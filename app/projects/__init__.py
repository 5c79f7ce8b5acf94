"""Projects (tenants): creation and settings."""
