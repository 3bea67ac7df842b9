"""Two starts of the same quiz at the same moment, each on its own connection: one attempt."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.db.context import Actor, acting_as
from portal.learning.assessment import services as quizzes
from portal.learning.assessment.models import QuizAttempt
from tests.factories import create_user
from tests.learning.factories.quiz import enroll, full_quiz, make_course
from tests.races import TIMEOUT, race, remove_committed


@pytest.fixture
def committed_quiz(app):
    with app.app_context(), acting_as(Actor.system("tests")):
        teacher, student = create_user("faculty"), create_user("student")
        course = make_course(teacher)
        enroll(student, course)
        quiz, _ = full_quiz(course)
        ids = {"student": student.id, "teacher": teacher.id, "course": course.id, "quiz": quiz.id}
        db.session.commit()
        db.session.remove()
    try:
        yield ids
    finally:
        remove_committed(app, course_id=ids["course"], user_ids=[ids["student"], ids["teacher"]])


@pytest.mark.no_db_rollback
def test_a_double_start_on_two_connections_makes_one_attempt(app, committed_quiz, monkeypatch):
    """Both requests find no open attempt (they wait for each other at a barrier after the
    check), both insert; the partial unique index lets one through, the other waits for it to
    commit, fails, and returns the winner's attempt."""
    barrier = threading.Barrier(2)
    real_layout = quizzes._layout

    def layout_after_both_checked(quiz):
        barrier.wait(timeout=TIMEOUT)
        return real_layout(quiz)

    monkeypatch.setattr(quizzes, "_layout", layout_after_both_checked)
    lookups = []
    real_open = quizzes._open_attempt

    def counted_open(user, quiz_id):
        found = real_open(user, quiz_id)
        lookups.append(found is not None)
        return found

    monkeypatch.setattr(quizzes, "_open_attempt", counted_open)
    outcomes = race(app, [(committed_quiz["student"], "student",
                           lambda student: quizzes.start_attempt(student, committed_quiz["quiz"]).id)] * 2,
                    barrier=barrier)
    assert outcomes[0].value == outcomes[1].value
    # Two checks that found nothing, then the loser's look-up after its insert failed.
    assert sorted(lookups) == [False, False, True]
    with app.app_context(), acting_as(Actor.system("tests")):
        count = db.session.scalar(select(func.count()).select_from(QuizAttempt)
                                  .where(QuizAttempt.quiz_id == committed_quiz["quiz"]))
        db.session.remove()
    assert count == 1
