"""Receivers of the learning events that award achievements and complete courses. ``create_app``
connects them (``portal.app._connect_listeners``); they run inside the emitter's transaction.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from portal import events
from portal.accounts.models import Role, User
from portal.db import db
from portal.learning.assessment.models import Quiz, QuizAttempt, QuizQuestion
from portal.learning.education.models import AchievementKind
from portal.learning.education.services import award, check_course_completion


def _max_score(quiz: Quiz, attempt: QuizAttempt | None) -> Decimal | None:
    if attempt is not None and getattr(attempt, "max_score", None) is not None:
        return Decimal(attempt.max_score)
    return db.session.scalar(select(func.sum(QuizQuestion.points)).where(QuizQuestion.quiz_id == quiz.id))


@events.quiz_passed.connect
def _on_quiz_passed(_sender=None, *, user: User, quiz: Quiz, score, attempt: QuizAttempt | None = None,
                    **_) -> None:
    """A passed quiz: ``perfect_quiz`` when the score is the quiz's maximum, and the course may
    now be complete. ``score`` is in points; the maximum is the attempt's ``max_score`` when an
    ``attempt`` is sent along, otherwise the sum of the quiz's question points."""
    maximum = _max_score(quiz, attempt)
    if score is not None and maximum and Decimal(score) >= maximum:
        award(user, AchievementKind.PERFECT_QUIZ, f"Perfect score in {quiz.title}")
    if user.role == Role.STUDENT:
        check_course_completion(user, quiz.course_id)
