"""Database runtime: the declarative base, the engine's extension, RLS and audit plumbing."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.db.base import Base, Model, TimestampedModel, db
from portal.db.context import Actor, acting_as

__all__ = ["CLI_ACTOR", "Base", "Model", "TimestampedModel", "as_cli_actor", "db", "request_cache", "unit_of_work"]

#: The key of ``request_cache`` in ``Session.info``.
REQUEST_CACHE = "request_cache"


def request_cache() -> dict:
    """Values worth remembering for the rest of the current unit of work (a request, a job):
    kept in the session, so they go when the session is removed at the end of the request, and
    when its transaction commits or rolls back (hooks below)."""
    return db.session.info.setdefault(REQUEST_CACHE, {})


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


#: Who a command-line command acts as (``flask --app wsgi <command>``), so the audit trail says
#: who did it. It lives here, below every command module, so a domain package that declares a
#: command does not import ``portal.cli`` (which imports it back to register it).
CLI_ACTOR = Actor.system("cli")


def as_cli_actor(fn):
    """Run a command's body as ``system:cli`` in one transaction: commit, or roll back."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with unit_of_work(CLI_ACTOR):
            return fn(*args, **kwargs)

    return run


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_soft_rollback")
def _forget_request_cache(session: Session, *_args) -> None:
    session.info.pop(REQUEST_CACHE, None)
