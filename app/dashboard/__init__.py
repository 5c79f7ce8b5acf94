"""The dashboard: usage over time by model tier, top customers, shedding and deployments."""
