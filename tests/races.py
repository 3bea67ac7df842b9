"""Run service calls at the same moment on separate connections, as concurrent requests would.

Each call runs in its own thread with its own app context, database session and transaction,
acting as its user, and commits when it returns. Tests that use it need committed rows (the
``no_db_rollback`` marker and a fixture that commits and cleans up)::

    outcomes = race(app, [(student_id, "student", lambda user: services.enrol(user, course_id))] * 2)
    assert [o.value for o in outcomes] == [...]

By default every call waits at a barrier after loading its user, so the actions start together.
A test that needs the meeting point deeper inside the action (after a check, before a lock)
passes its own ``barrier`` and waits on it from a patched function; the harness then only aborts
that barrier when a call fails, so the other thread does not wait for ever.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from portal.accounts.models import User
from portal.db import db
from portal.db.context import Actor, acting_as

#: Seconds a call may wait for the others (and the database's locks) before the test fails.
TIMEOUT = 30

#: ``(user id, role, action)``: ``action(user)`` runs as that user; its return value is kept.
RaceCall = tuple[uuid.UUID, str, Callable[[User], object]]


@dataclass
class Outcome:
    """What one call came to: the action's return value, or the expected refusal it raised."""

    value: object = None
    refused: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None


def race(app, calls: Sequence[RaceCall], *, expected: tuple[type[BaseException], ...] = (),
         barrier: threading.Barrier | None = None, request_context: bool = False,
         timeout: float = TIMEOUT) -> list[Outcome]:
    """Run ``calls`` at once and return their outcomes in call order.

    An exception of an ``expected`` type becomes the call's ``refused`` outcome (its transaction
    rolled back); any other exception fails the test after every thread has ended. With
    ``request_context`` each call also runs inside a test request (for services that record the
    request's address)."""
    own_barrier = barrier is None
    meeting = threading.Barrier(len(calls)) if own_barrier else barrier
    outcomes: list[Outcome | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, user_id: uuid.UUID, role: str, action: Callable[[User], object]) -> None:
        try:
            request = app.test_request_context() if request_context else contextlib.nullcontext()
            with app.app_context(), request, acting_as(Actor.for_user(user_id, role)):
                try:
                    user = db.session.get(User, user_id)
                    if own_barrier:
                        meeting.wait(timeout=timeout)
                    try:
                        value = action(user)
                        db.session.commit()
                        outcomes[index] = Outcome(value=value)
                    except expected as exc:
                        outcomes[index] = Outcome(refused=exc)
                finally:
                    db.session.rollback()
                    db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread below
            errors.append(exc)
            meeting.abort()

    threads = [threading.Thread(target=run, args=(index, *call), daemon=True) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout * 2)
    assert not any(thread.is_alive() for thread in threads), "a concurrent call hung"
    if errors:
        raise errors[0]
    return [outcome for outcome in outcomes if outcome is not None]


def remove_committed(app, *, course_id: uuid.UUID, user_ids: Sequence[uuid.UUID]) -> None:
    """Undo what a race fixture committed: the users' certificates (a completed course issues
    one), the course with everything in it, then the users."""
    from sqlalchemy import delete

    from portal.learning.education.models import Course
    from portal.learning.lms.models import Certificate

    with app.app_context(), acting_as(Actor.system("tests")):
        db.session.execute(delete(Certificate).where(Certificate.user_id.in_(user_ids)))
        db.session.execute(delete(Course).where(Course.id == course_id))
        db.session.execute(delete(User).where(User.id.in_(user_ids)))
        db.session.commit()
        db.session.remove()


#: Who sets up and reads the rows of a race (committed, outside any test's transaction).
SETUP_ACTOR = Actor.system("tests")


def committed(app, fn):
    """``fn()`` in a transaction of its own, as the system actor, committed; its return value."""
    with app.app_context(), acting_as(SETUP_ACTOR):
        try:
            value = fn()
            db.session.commit()
            return value
        finally:
            db.session.rollback()
            db.session.remove()


def read(app, fn):
    """``fn()`` in a transaction of its own, as the system actor, rolled back; its return value."""
    with app.app_context(), acting_as(SETUP_ACTOR):
        try:
            return fn()
        finally:
            db.session.rollback()
            db.session.remove()
