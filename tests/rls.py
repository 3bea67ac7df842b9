"""Row-level security checks: read as one identity with no WHERE clause, and see what comes back."""

from __future__ import annotations

from sqlalchemy import select

from portal.db import db


def visible(model) -> set:
    """Every id the current identity can read: no WHERE clause at all."""
    return set(db.session.scalars(select(model.id)))
