"""Azora Portal: the application package (domain logic, models, database runtime; no HTTP)."""
