"""Row-level security checks: read as one identity with no WHERE clause, and see what comes back."""

from __future__ import annotations

from sqlalchemy import select

from portal.db import db
from portal.db.context import Actor, acting_as


def visible(model) -> set:
    """Every id the current identity can read: no WHERE clause at all."""
    return set(db.session.scalars(select(model.id)))


def as_user(user, role: str | None = None):
    """Act as ``user`` (in ``role``, by default their own) on the test's session."""
    return acting_as(Actor.for_user(user.id, role or user.role.value), db.session)
