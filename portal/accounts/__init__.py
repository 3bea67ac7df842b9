"""Accounts: users and their student and faculty profiles."""
