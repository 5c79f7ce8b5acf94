"""Customers: details, tier assignment, balances."""
