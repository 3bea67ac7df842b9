"""E-mail (spec 18): an outbox table that a worker delivers from."""
