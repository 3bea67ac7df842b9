"""Database runtime: the declarative base, the engine's extension, RLS and audit plumbing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from portal.db.base import Base, Model, TimestampedModel, db
from portal.db.context import Actor, acting_as

__all__ = ["Base", "Model", "TimestampedModel", "db", "unit_of_work"]


@contextlib.contextmanager
def unit_of_work(actor: Actor) -> Iterator[None]:
    """Run a block as ``actor`` in one transaction: commit at the end, roll back on error.

    For work outside a request (commands, jobs); views commit themselves.
    """
    with acting_as(actor):
        try:
            yield
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
