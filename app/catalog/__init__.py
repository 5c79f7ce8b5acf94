"""The model catalog: models, prices, deployments, and the default model per model tier."""
