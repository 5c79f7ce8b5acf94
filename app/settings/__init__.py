"""Project settings: defaults for new customers, shedding, capacity."""
