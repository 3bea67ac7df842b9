"""Two events completing steps of one path at the same moment, each on its own connection: every
step is counted once and none is lost; two regenerations at once leave one active path."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.learning.tutoring import paths
from portal.learning.tutoring.models import LearningPath, PathStatus, PathStep, StepKind, StepStatus
from tests.learning.tutoring.factories.paths import build_course, create_user, enrol
from tests.races import TIMEOUT, race, remove_committed


@pytest.fixture
def committed_path(app):
    with app.app_context(), acting_as(Actor.system("tests")):
        student = create_user("student")
        built = build_course(titles=("Loops",), lessons=3, questions=2)
        enrol(student, built)
        path = paths.generate_path(student.id, built.course.id)
        ids = {"student": student.id, "teacher": built.teacher.id, "course": built.course.id, "path": path.id,
               "lessons": [lesson.id for lesson in built.topics[0].lessons]}
        db.session.commit()
        db.session.remove()
    try:
        yield ids
    finally:
        remove_committed(app, course_id=ids["course"], user_ids=[ids["student"], ids["teacher"]])


def _path_state(app, path_id):
    with app.app_context(), acting_as(Actor.system("tests")):
        path = db.session.get(LearningPath, path_id)
        done = db.session.scalar(select(func.count()).select_from(PathStep).where(
            PathStep.path_id == path_id, PathStep.status == StepStatus.DONE))
        state = (path.steps_done, done, path.status)
        db.session.remove()
    return state


def _wait_until_someone_waits_for_a_lock() -> None:
    """Poll (from this transaction's connection) until another backend of this database waits
    on a lock: the second event is then queued behind the first one's path row."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        waiting = db.session.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalar()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the second event never waited for the first one's lock")


@pytest.mark.no_db_rollback
def test_two_steps_completed_at_once_are_both_counted(app, committed_path):
    """The first event marks its step and holds the path row until the second one is queued
    behind it; the second then adds its step to the count the first committed (a count taken
    from the second one's snapshot would say 1)."""
    first_done = threading.Event()
    first, second = committed_path["lessons"][:2]

    def first_event(user):
        marked = paths.complete_steps(user.id, lesson_id=first)
        first_done.set()
        _wait_until_someone_waits_for_a_lock()
        return marked

    def second_event(user):
        assert first_done.wait(TIMEOUT)
        return paths.complete_steps(user.id, lesson_id=second)

    outcomes = race(app, [(committed_path["student"], "student", first_event),
                          (committed_path["student"], "student", second_event)])
    assert [o.value for o in outcomes] == [1, 1]
    assert _path_state(app, committed_path["path"]) == (2, 2, PathStatus.ACTIVE)


@pytest.mark.no_db_rollback
def test_the_same_step_completed_twice_at_once_counts_once(app, committed_path):
    lesson = committed_path["lessons"][0]
    outcomes = race(app, [(committed_path["student"], "student",
                           lambda user: paths.complete_steps(user.id, lesson_id=lesson))] * 2)
    assert sorted(o.value for o in outcomes) == [0, 1]
    assert _path_state(app, committed_path["path"]) == (1, 1, PathStatus.ACTIVE)


@pytest.mark.no_db_rollback
def test_the_last_two_steps_at_once_complete_the_path_once(app, committed_path):
    with app.app_context(), acting_as(Actor.system("tests")):
        steps = db.session.scalars(select(PathStep).where(PathStep.path_id == committed_path["path"])
                                   .order_by(PathStep.position)).all()
        kinds = [s.kind for s in steps]
        quiz_id = next(s.quiz_id for s in steps if s.kind == StepKind.TAKE_QUIZ)
        assignment_id = next(s.assignment_id for s in steps if s.kind == StepKind.SUBMIT_ASSIGNMENT)
        paths.complete_steps(committed_path["student"], lesson_id=committed_path["lessons"][0])
        paths.complete_steps(committed_path["student"], lesson_id=committed_path["lessons"][1])
        paths.complete_steps(committed_path["student"], lesson_id=committed_path["lessons"][2])
        db.session.commit()
        db.session.remove()
    assert kinds.count(StepKind.STUDY_LESSON) == 3 and len(kinds) == 5
    race(app, [(committed_path["student"], "student",
                lambda user: paths.complete_steps(user.id, quiz_id=quiz_id, submitted=True)),
               (committed_path["student"], "student",
                lambda user: paths.complete_steps(user.id, assignment_id=assignment_id))])
    assert _path_state(app, committed_path["path"]) == (5, 5, PathStatus.COMPLETED)


@pytest.mark.no_db_rollback
def test_two_regenerations_at_once_leave_one_active_path(app, committed_path):
    race(app, [(committed_path["student"], "student",
                lambda user: paths.generate_path(user.id, committed_path["course"]).id)] * 2)
    with app.app_context(), acting_as(Actor.system("tests")):
        statuses = db.session.scalars(select(LearningPath.status).where(
            LearningPath.user_id == committed_path["student"])).all()
        db.session.remove()
    assert sorted(s.value for s in statuses) == ["active", "replaced", "replaced"]
