"""The people who may sign in to the admin."""
