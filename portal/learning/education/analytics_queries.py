"""Course analytics for its teachers: the enrolment funnel, drop-off per lesson, time to
complete, and the quizzes to analyse (``portal.learning.assessment.item_analysis``).

Each read is one statement whatever the number of students or lessons."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Integer, cast, func, select

from portal.db import db
from portal.learning.assessment.models import AttemptStatus, Quiz, QuizAttempt
from portal.learning.education.models import Enrollment, EnrollmentStatus, Lesson, Module, Progress


@dataclass(frozen=True)
class FunnelStep:
    label: str
    count: int
    share: Decimal  #: percent of the enrolled


def funnel(course_id: uuid.UUID) -> list[FunnelStep]:
    """Enrolled -> opened a lesson -> halfway -> completed."""
    started = select(Progress.user_id.label("uid")).where(Progress.course_id == course_id).distinct().subquery()
    row = db.session.execute(
        select(func.count(Enrollment.id),
               func.count(started.c.uid),
               func.count(Enrollment.id).filter(Enrollment.progress_percent >= 50),
               func.count(Enrollment.id).filter(Enrollment.status == EnrollmentStatus.COMPLETED))
        .select_from(Enrollment)
        .outerjoin(started, started.c.uid == Enrollment.user_id)
        .where(Enrollment.course_id == course_id)).one()
    enrolled = row[0]
    labels = ("Enrolled", "Opened a lesson", "Halfway", "Completed")
    return [FunnelStep(label, count, Decimal(100 * count / enrolled).quantize(Decimal("0.1")) if enrolled
                       else Decimal(0)) for label, count in zip(labels, row, strict=True)]


@dataclass(frozen=True)
class LessonStep:
    module: str
    title: str
    viewed: int
    completed: int
    drop: int  #: completed the lesson before it, but not this one


def drop_off(course_id: uuid.UUID) -> list[LessonStep]:
    """Per lesson in course order: how many opened and completed it, and how many who
    completed the previous lesson did not complete this one."""
    rows = db.session.execute(
        select(Module.title, Lesson.title,
               func.count(Progress.id),
               func.count(Progress.completed_at))
        .join(Module, Module.id == Lesson.module_id)
        .outerjoin(Progress, Progress.lesson_id == Lesson.id)
        .where(Lesson.course_id == course_id)
        .group_by(Module.position, Module.title, Lesson.position, Lesson.id, Lesson.title)
        .order_by(Module.position, Lesson.position)).all()
    steps, before = [], None
    for module, title, viewed, completed in rows:
        steps.append(LessonStep(module, title, viewed, completed, max(0, before - completed) if before is not None
                                else 0))
        before = completed
    return steps


@dataclass(frozen=True)
class TimeToComplete:
    completed: int
    mean_days: Decimal | None
    median_days: Decimal | None
    p90_days: Decimal | None


def time_to_complete(course_id: uuid.UUID) -> TimeToComplete:
    """Days from enrolment to completion, over the completed enrolments."""
    days = func.extract("epoch", Enrollment.completed_at - Enrollment.created_at) / 86400
    row = db.session.execute(
        select(func.count(Enrollment.id), func.avg(days),
               func.percentile_cont(0.5).within_group(days), func.percentile_cont(0.9).within_group(days))
        .where(Enrollment.course_id == course_id, Enrollment.completed_at.is_not(None))).one()

    def rounded(value) -> Decimal | None:
        return None if value is None else Decimal(str(value)).quantize(Decimal("0.1"))

    return TimeToComplete(row[0], rounded(row[1]), rounded(row[2]), rounded(row[3]))


@dataclass(frozen=True)
class QuizChoice:
    id: uuid.UUID
    title: str
    attempts: int


def quizzes(course_id: uuid.UUID) -> list[QuizChoice]:
    """The course's quizzes, with their graded attempts, to choose one to analyse."""
    graded = func.count(QuizAttempt.id).filter(QuizAttempt.status == AttemptStatus.GRADED)
    rows = db.session.execute(
        select(Quiz.id, Quiz.title, cast(graded, Integer))
        .outerjoin(QuizAttempt, QuizAttempt.quiz_id == Quiz.id)
        .where(Quiz.course_id == course_id).group_by(Quiz.id, Quiz.title).order_by(Quiz.title))
    return [QuizChoice(*row) for row in rows]
