"""The demo shows insights and paths: seeding the demo courses gives the demo students graded
attempts at the quizzes of the modules they finished, their insights and a path; seeding again
adds nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from portal.db import db
from portal.learning.assessment.models import Answer, AttemptStatus, QuizAttempt
from portal.learning.demo import seed_learning
from portal.learning.tutoring.models import InsightKind, LearningInsight, LearningPath, PathStatus, PathStep
from tests.factories import create_user


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_demo_students_get_attempts_insights_and_paths():
    students = [create_user("student") for _ in range(6)]
    seed_learning(create_user("faculty"), students)
    ids = [s.id for s in students]
    attempts = db.session.scalars(select(QuizAttempt).where(QuizAttempt.user_id.in_(ids))).all()
    assert attempts and all(a.status == AttemptStatus.GRADED and a.percent is not None for a in attempts)
    assert {a.passed for a in attempts} == {True, False}  # some pass, some do not
    assert count(Answer, Answer.attempt_id.in_([a.id for a in attempts])) >= 4 * len(attempts)
    kinds = set(db.session.scalars(select(LearningInsight.kind).where(LearningInsight.user_id.in_(ids))))
    assert kinds == {InsightKind.WEAK_TOPIC, InsightKind.STRONG_TOPIC, InsightKind.PACE}
    # The first demo student (the demo login) has a weak topic and a path that starts on it.
    first = students[0].id
    assert count(LearningInsight, LearningInsight.user_id == first, LearningInsight.kind == InsightKind.WEAK_TOPIC)
    path = db.session.scalar(select(LearningPath).where(LearningPath.user_id == first))
    assert path.status == PathStatus.ACTIVE and path.steps_total >= 3
    # Every active enrolment has exactly one current path.
    assert count(LearningPath, LearningPath.user_id.in_(ids), LearningPath.status == PathStatus.ACTIVE) >= 5

    before = (count(QuizAttempt, QuizAttempt.user_id.in_(ids)), count(LearningPath, LearningPath.user_id.in_(ids)),
              count(PathStep, PathStep.user_id.in_(ids)), count(LearningInsight, LearningInsight.user_id.in_(ids)))
    seed_learning(create_user("faculty"), students)
    after = (count(QuizAttempt, QuizAttempt.user_id.in_(ids)), count(LearningPath, LearningPath.user_id.in_(ids)),
             count(PathStep, PathStep.user_id.in_(ids)), count(LearningInsight, LearningInsight.user_id.in_(ids)))
    assert after == before
