"""Usage tiers: versioned plans."""
