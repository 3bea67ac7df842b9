"""Receivers of the learning events that keep the tutor's passages, insights and paths current.
``create_app`` connects them (``portal.app._connect_listeners``).

They run inside the emitter's database transaction, as whoever caused the event (the student,
the staff member whose grading released a grade or finished a quiz attempt, or the system job
that closed an attempt at its deadline). Each event costs at most one refresh of the student's
insights for the course and one statement completing path steps.

The lesson's passages follow its text in the same transaction (``_on_lesson_changed``), so a
saved lesson is searchable at once. Insights and paths are derived data: a failure here must not undo the student's work. Each
receiver's writes run in a savepoint; an error rolls back only the savepoint, is logged, and the
learning action goes on (the next event, or regenerating the path, recomputes everything).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from portal import events
from portal.accounts.models import User
from portal.db import db
from portal.learning.assessment.models import Quiz, QuizAttempt
from portal.learning.education.models import Lesson
from portal.learning.lms.models import Assignment, Submission
from portal.learning.tutoring import passages, paths
from portal.learning.tutoring.insights import refresh_insights

log = logging.getLogger(__name__)


def _isolated(what: str, work: Callable[[], None]) -> None:
    try:
        with db.session.begin_nested():
            work()
    except Exception:  # derived data never fails the learning action; logged
        log.exception("learning insights/path update failed after %s", what)


@events.lesson_changed.connect
def _on_lesson_changed(_sender=None, *, lesson: Lesson, change: str, **_) -> None:
    """Keep the lesson's passages in step with its text, in the same transaction."""
    if change == "deleted":
        passages.remove_lesson(lesson.id)
    else:
        passages.index_lesson(lesson)


@events.lesson_completed.connect
def _on_lesson_completed(_sender=None, *, user: User, lesson: Lesson, **_) -> None:
    def work():
        paths.complete_steps(user.id, lesson_id=lesson.id)
        refresh_insights(user.id, lesson.course_id)

    _isolated("lesson_completed", work)


@events.quiz_submitted.connect
def _on_quiz_submitted(_sender=None, *, user: User, quiz: Quiz, attempt: QuizAttempt, **_) -> None:
    """Taking the quiz is done; a retry is done when the attempt scored better than every
    earlier one. A passed attempt was handled a moment ago by ``quiz_passed`` (sent while the
    attempt was graded, in the same call), so its insights are not computed twice."""

    def work():
        passed = bool(attempt.passed)
        paths.complete_steps(user.id, quiz_id=quiz.id, submitted=True, passed=passed,
                             improved=not passed and paths.improved_on_earlier(attempt))
        if not passed:
            refresh_insights(user.id, quiz.course_id)

    _isolated("quiz_submitted", work)


@events.quiz_passed.connect
def _on_quiz_passed(_sender=None, *, user: User, quiz: Quiz, **_) -> None:
    """Sent when an attempt is graded as passed: on submission, or when the last essay of a
    waiting attempt is graded by hand."""

    def work():
        paths.complete_steps(user.id, quiz_id=quiz.id, quiz_module_id=quiz.module_id, passed=True)
        refresh_insights(user.id, quiz.course_id)

    _isolated("quiz_passed", work)


@events.quiz_graded.connect
def _on_quiz_graded(_sender=None, *, user: User, quiz: Quiz, attempt: QuizAttempt, **_) -> None:
    """An attempt that waited for its essays has its final score: new evidence about its topic,
    and a retry step done if it beat the earlier attempts. (A pass was handled by
    ``quiz_passed`` a moment ago, in the same call.)"""
    if attempt.passed:
        return

    def work():
        paths.complete_steps(user.id, quiz_id=quiz.id, submitted=True, improved=paths.improved_on_earlier(attempt))
        refresh_insights(user.id, quiz.course_id)

    _isolated("quiz_graded", work)


@events.assignment_submitted.connect
def _on_assignment_submitted(_sender=None, *, user: User, submission: Submission, **_) -> None:
    """A submission finishes its path step; insights wait for the grade's release."""
    _isolated("assignment_submitted",
              lambda: paths.complete_steps(user.id, assignment_id=submission.assignment_id))


@events.assignment_graded.connect
def _on_assignment_graded(_sender=None, *, user: User, submission: Submission, **_) -> None:
    """A grade released to the student is new evidence about the assignment's topic."""

    def work():
        course_id = db.session.get(Assignment, submission.assignment_id).course_id
        refresh_insights(user.id, course_id)

    _isolated("assignment_graded", work)
