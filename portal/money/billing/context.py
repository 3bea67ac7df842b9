"""The row-level-security role billing acts with where a student's own role cannot reach: the
per-year invoice number counters, and another user's subscription when a page or a listener
asks what that user is entitled to (policies in migration 0013)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.exc import SQLAlchemyError

from portal.db import db
from portal.db.context import Actor, current_actor, push, reset

BILLING_ROLE = "billing"


@contextlib.contextmanager
def as_billing() -> Iterator[None]:
    """Run a block with the ``billing`` role, keeping the acting user for the audit trail."""
    actor = current_actor() or Actor(label="")
    token = push(Actor(label=actor.label, user_id=actor.user_id, role=BILLING_ROLE), db.session)
    try:
        yield
    except BaseException:
        with contextlib.suppress(SQLAlchemyError):
            reset(token, db.session)
        raise
    reset(token, db.session)
