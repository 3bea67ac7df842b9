"""Actions shared by tests of every area (rows go in ``tests/factories.py``)."""

from __future__ import annotations

from portal.db import db
from portal.db.context import Actor, acting_as


def as_user(user, role: str | None = None):
    """Act as ``user`` (in ``role``, by default their own) on the test's session: row-level
    security and the audit trail see what a request of theirs would. A context manager."""
    return acting_as(Actor.for_user(user.id, role or user.role.value), db.session)
