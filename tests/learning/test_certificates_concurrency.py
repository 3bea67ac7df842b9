"""Two students complete courses at the same moment, in two real threads with their own
connections: the second append waits on the register's advisory lock and links to the first,
so the chain never forks."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import delete, select, text

from portal.accounts.models import User
from portal.db import db, unit_of_work
from portal.db.context import Actor
from portal.learning.education.models import Course
from portal.learning.lms import certificates as service
from portal.learning.lms.models import Certificate
from portal.platform.notifications.models import Notification
from tests.factories import create_user
from tests.learning.factories.certificates import create_course

ACTOR = Actor.system("tests")
WAIT = 20  # seconds: a bound on waiting for the other thread, never an expectation of speed


def _waiting_on_the_register_lock(app) -> bool:
    """Whether some transaction waits for the register's advisory lock (seen from a third
    connection)."""
    key = service.CHAIN_LOCK_KEY & 0xFFFFFFFFFFFFFFFF
    high, low = key >> 32, key & 0xFFFFFFFF
    with app.app_context(), db.engine.connect() as conn:
        return bool(conn.scalar(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = :high AND objid::bigint = :low"), {"high": high, "low": low}))


@pytest.fixture
def two_students(app):
    with app.app_context(), unit_of_work(ACTOR):
        students = [create_user("student").id for _ in range(2)]
        courses = [create_course().id for _ in range(2)]
    yield list(zip(students, courses, strict=True))
    with app.app_context(), unit_of_work(ACTOR):
        db.session.execute(delete(Certificate).where(Certificate.user_id.in_(students)))
        db.session.execute(delete(Notification).where(Notification.user_id.in_(students)))
        db.session.execute(delete(Course).where(Course.id.in_(courses)))
        db.session.execute(delete(User).where(User.id.in_(students)))


@pytest.mark.no_db_rollback
def test_concurrent_issuing_keeps_the_chain_linear(app, two_students):
    (first_student, first_course), (second_student, second_course) = two_students
    first_issued = threading.Event()
    release_first = threading.Event()
    results: dict[str, tuple[int, str, str]] = {}
    errors: list[BaseException] = []

    def issue(name, user_id, course_id, before_commit=None):
        try:
            with app.app_context(), unit_of_work(ACTOR):
                certificate = service.issue_certificate(db.session.get(User, user_id),
                                                        db.session.get(Course, course_id))
                results[name] = (certificate.serial, certificate.previous_hash, certificate.entry_hash)
                if before_commit:
                    before_commit()
        except BaseException as exc:  # noqa: BLE001 - surfaced by the main thread
            errors.append(exc)
            first_issued.set()

    def hold_until_released():
        first_issued.set()
        assert release_first.wait(WAIT), "the test never released the first transaction"

    first = threading.Thread(target=issue, args=("first", first_student, first_course, hold_until_released))
    second = threading.Thread(target=issue, args=("second", second_student, second_course))
    first.start()
    try:
        assert first_issued.wait(WAIT) and not errors, errors
        # The first has appended and not committed; the second now reads the register's end.
        second.start()
        deadline = time.monotonic() + WAIT
        while not _waiting_on_the_register_lock(app):
            assert time.monotonic() < deadline, "the second append never waited for the first"
            assert second.is_alive(), "the second append finished while the first held the register"
            time.sleep(0.01)
        assert "second" not in results
    finally:
        release_first.set()
        first.join(WAIT)
        second.join(WAIT)
    assert not errors, errors
    assert not first.is_alive() and not second.is_alive()

    first_serial, _, first_hash = results["first"]
    second_serial, second_previous, _ = results["second"]
    assert second_serial > first_serial
    assert second_previous == first_hash  # linked to the first, not to what was last before it

    with app.app_context(), unit_of_work(ACTOR):
        chain = list(db.session.scalars(select(Certificate).order_by(Certificate.serial)))
        previous_hashes = [c.previous_hash for c in chain]
        assert len(set(previous_hashes)) == len(previous_hashes)  # no fork
        for before, after in zip(chain, chain[1:], strict=False):
            assert after.previous_hash == before.entry_hash
        signer = service.current_signer()
        report = service.verify_register(chain, signer.public_key, signer.key_id)
        assert report.ok, report.problems


@pytest.mark.no_db_rollback
def test_the_same_completion_twice_at_once_issues_one_certificate(app, two_students):
    (student, course), _ = two_students
    barrier = threading.Barrier(2)
    codes: list[str] = []
    errors: list[BaseException] = []

    def issue():
        try:
            with app.app_context(), unit_of_work(ACTOR):
                user, row = db.session.get(User, student), db.session.get(Course, course)
                barrier.wait(WAIT)
                codes.append(service.issue_certificate(user, row).code)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=issue) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not errors, errors
    assert len(codes) == 2 and codes[0] == codes[1]
    with app.app_context(), unit_of_work(ACTOR):
        assert len(list(db.session.scalars(select(Certificate).where(Certificate.user_id == student)))) == 1
