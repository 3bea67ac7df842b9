"""Receivers of the learning events that pay rewards. ``create_app`` connects them
(``portal.app._connect_listeners``), so every process that builds the app pays rewards.

They run inside the emitter's database transaction, as whoever caused the event (the student,
or the staff member whose grading finished a quiz attempt): the earnings are written with the
ledger's row-level-security role, and commit or roll back with the learning change. A refusal
of the ledger leaves the earning pending (``services``); anything else propagates, so the
learning request fails as it would for any database error.
"""

from __future__ import annotations

from portal import events
from portal.accounts.models import User
from portal.learning.assessment.models import Quiz, QuizAttempt
from portal.learning.education.models import Course, Lesson
from portal.money.earnings import services


@events.course_completed.connect
def _on_course_completed(_sender=None, *, user: User, course: Course, **_) -> None:
    services.reward_course_completed(user, course)


@events.quiz_passed.connect
def _on_quiz_passed(_sender=None, *, user: User, quiz: Quiz, attempt: QuizAttempt | None = None, **_) -> None:
    """``score`` is in points; the minimum of a milestone is a percent, taken from the attempt
    when one is sent along, otherwise from the student's best passed attempt at the quiz."""
    percent = getattr(attempt, "percent", None) if attempt is not None else None
    services.reward_quiz_passed(user, quiz, percent)


@events.lesson_completed.connect
def _on_lesson_completed(_sender=None, *, user: User, lesson: Lesson, **_) -> None:
    services.reward_lesson_completed(user, lesson)
