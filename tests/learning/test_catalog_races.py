"""Two requests at once for the same student (a double click on "Mark complete", on "Enrol"):
real transactions on two connections, committed. The lesson is completed once, the event fires
once, the achievement is earned once, and there is one enrolment."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from portal import events
from portal.accounts.models import User
from portal.db import context as db_context
from portal.db import db
from portal.learning.education import services
from portal.learning.education.models import Achievement, AchievementKind, Enrollment
from tests.factories import create_user
from tests.learning.factories.catalog import lessons_of, make_course
from tests.races import race, remove_committed


@pytest.fixture
def committed(app):
    """A student and a one-lesson course, committed for real; removed afterwards."""
    with app.app_context(), db_context.acting_as(db_context.Actor.system("tests")):
        student = create_user("student")
        course = make_course(modules=1, lessons_per_module=1, requires_quizzes_passed=False)
        ids = {"user": student.id, "course": course.id, "lesson": lessons_of(course)[0].id}
        db.session.commit()
        db.session.remove()
    try:
        yield ids
    finally:
        remove_committed(app, course_id=ids["course"], user_ids=[ids["user"]])


def run_twice(app, ids, action) -> list:
    """Run ``action(student)`` in two threads at once, each in its own committed transaction."""
    return [outcome.value for outcome in race(app, [(ids["user"], "student", action)] * 2)]


@pytest.mark.no_db_rollback
def test_double_enrol_makes_one_enrolment(app, committed):
    results = run_twice(app, committed, lambda student: services.enrol(student, committed["course"]).id)
    assert results[0] == results[1]
    with app.app_context(), db_context.acting_as(db_context.Actor.system("tests")):
        assert db.session.scalar(select(func.count()).select_from(Enrollment)
                                 .where(Enrollment.user_id == committed["user"])) == 1
        db.session.remove()


@pytest.mark.no_db_rollback
def test_double_complete_counts_once(app, committed):
    with app.app_context(), db_context.acting_as(db_context.Actor.for_user(committed["user"], "student")):
        services.enrol(db.session.get(User, committed["user"]), committed["course"])
        db.session.commit()
        db.session.remove()
    fired, lock = [], threading.Lock()

    def receiver(sender, **kwargs):
        with lock:
            fired.append(kwargs["lesson"].id)

    events.lesson_completed.connect(receiver)
    try:
        results = run_twice(app, committed, lambda student: services.complete_lesson(student, committed["lesson"]))
    finally:
        events.lesson_completed.disconnect(receiver)
    assert sorted(r.newly_completed for r in results) == [False, True]
    assert fired == [committed["lesson"]]
    with app.app_context(), db_context.acting_as(db_context.Actor.system("tests")):
        kinds = sorted(db.session.scalars(select(Achievement.kind).where(Achievement.user_id == committed["user"])))
        assert kinds == sorted([AchievementKind.FIRST_LESSON, AchievementKind.COURSE_COMPLETED])
        db.session.remove()
