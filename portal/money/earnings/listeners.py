"""Receivers of the learning events that pay rewards: importing this module connects them
(``blueprints/wallet/earnings.py`` imports it, so they are connected whenever the app exists).

They run inside the emitter's database transaction, as whoever caused the event (the student,
or the staff member whose grading finished a quiz attempt): the earnings are written with the
ledger's row-level-security role, and commit or roll back with the learning change. A refusal
of the ledger leaves the earning pending (``services``); anything else propagates, so the
learning request fails as it would for any database error.
"""

from __future__ import annotations

from portal import events
from portal.money.earnings import services


@events.course_completed.connect
def _on_course_completed(sender, **kwargs) -> None:  # noqa: ARG001 - blinker passes the sender
    user, course = kwargs.get("user"), kwargs.get("course")
    if user is not None and course is not None:
        services.reward_course_completed(user, course)


@events.quiz_passed.connect
def _on_quiz_passed(sender, **kwargs) -> None:  # noqa: ARG001
    """``score`` is in points; the minimum of a milestone is a percent, taken from the attempt
    when one is sent along, otherwise from the student's best passed attempt at the quiz."""
    user, quiz = kwargs.get("user"), kwargs.get("quiz")
    if user is None or quiz is None:
        return
    attempt = kwargs.get("attempt")
    percent = getattr(attempt, "percent", None) if attempt is not None else None
    services.reward_quiz_passed(user, quiz, percent)


@events.lesson_completed.connect
def _on_lesson_completed(sender, **kwargs) -> None:  # noqa: ARG001
    user, lesson = kwargs.get("user"), kwargs.get("lesson")
    if user is not None and lesson is not None:
        services.reward_lesson_completed(user, lesson)
