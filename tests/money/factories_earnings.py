"""Rows for the earnings tests: milestones straight into the table, and acting as a user."""

from __future__ import annotations

import contextlib
import uuid
from decimal import Decimal

from portal.accounts.models import User
from portal.db import db
from portal.db.context import Actor, acting_as
from portal.money.earnings.models import Milestone, MilestoneKind


def make_milestone(kind: MilestoneKind = MilestoneKind.COURSE_COMPLETED, *, reward="5", currency="AZR",
                   **fields) -> Milestone:
    milestone = Milestone(title=fields.pop("title", f"Milestone {uuid.uuid4().hex[:6]}"), kind=kind,
                          reward_amount=Decimal(reward), reward_currency=currency, **fields)
    db.session.add(milestone)
    db.session.flush()
    return milestone


@contextlib.contextmanager
def as_user(user: User):
    """Run a block with ``user``'s identity (row-level security and the audit trail as in a
    request of theirs)."""
    with acting_as(Actor.for_user(user.id, user.role.value), db.session):
        yield
