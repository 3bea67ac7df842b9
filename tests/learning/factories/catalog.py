"""Rows for the catalog and studying tests: courses with modules and lessons, quizzes with
attempts, assignments with submissions."""

from __future__ import annotations

import uuid
from decimal import Decimal

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.learning.assessment.models import AttemptStatus, QuestionKind, Quiz, QuizAttempt, QuizQuestion
from portal.learning.education.models import Course, CourseLevel, CourseStatus, Enrollment, Lesson, Module
from portal.learning.lms.models import Assignment, CourseManagement, ManagementRole, Submission


def make_course(*, title: str | None = None, status: CourseStatus = CourseStatus.PUBLISHED,
                instructor: User | None = None, modules: int = 0, lessons_per_module: int = 0,
                category: str = "Computing", level: CourseLevel = CourseLevel.BEGINNER, **fields) -> Course:
    suffix = uuid.uuid4().hex[:8]
    course = Course(
        slug=fields.pop("slug", f"course-{suffix}"),
        title=title or f"Course {suffix}",
        summary=fields.pop("summary", "A short course for tests."),
        description=fields.pop("description", "Learn **things**."),
        category=category,
        level=level,
        status=status,
        published_at=utcnow() if status == CourseStatus.PUBLISHED else None,
        instructor_id=instructor.id if instructor else None,
        **fields,
    )
    db.session.add(course)
    db.session.flush()
    if instructor is not None:
        db.session.add(CourseManagement(course_id=course.id, user_id=instructor.id, role=ManagementRole.OWNER))
    for m in range(modules):
        module = make_module(course, title=f"Module {m + 1}")
        for _ in range(lessons_per_module):
            make_lesson(module)
    db.session.flush()
    return course


def make_module(course: Course, *, title: str = "A module", requires_previous: bool = False) -> Module:
    position = (db.session.query(db.func.max(Module.position)).filter(Module.course_id == course.id).scalar() or 0) + 1
    module = Module(course_id=course.id, position=position, title=title, summary="",
                    requires_previous=requires_previous)
    db.session.add(module)
    db.session.flush()
    return module


def make_lesson(module: Module, *, title: str | None = None, body: str = "Lesson text.") -> Lesson:
    position = (db.session.query(db.func.max(Lesson.position)).filter(Lesson.module_id == module.id).scalar()
                or 0) + 1
    lesson = Lesson(module_id=module.id, course_id=module.course_id, position=position,
                    title=title or f"Lesson {position} of {module.title}", body=body)
    db.session.add(lesson)
    db.session.flush()
    return lesson


def lessons_of(course: Course) -> list[Lesson]:
    return list(db.session.scalars(
        db.select(Lesson).join(Module, Module.id == Lesson.module_id)
        .where(Lesson.course_id == course.id).order_by(Module.position, Lesson.position)
    ))


def make_quiz(course: Course, *, module: Module | None = None, published: bool = True,
              points: tuple[int, ...] = (5, 5)) -> Quiz:
    quiz = Quiz(course_id=course.id, module_id=module.id if module else None, title=f"Quiz {uuid.uuid4().hex[:6]}",
                description="", published=published)
    db.session.add(quiz)
    db.session.flush()
    for position, value in enumerate(points, start=1):
        db.session.add(QuizQuestion(quiz_id=quiz.id, position=position, kind=QuestionKind.ESSAY,
                                    prompt="Why?", points=Decimal(value), feedback=""))
    db.session.flush()
    return quiz


def make_attempt(quiz: Quiz, user: User, *, passed: bool, score: Decimal = Decimal(8),
                 max_score: Decimal = Decimal(10)) -> QuizAttempt:
    number = (db.session.query(db.func.max(QuizAttempt.number))
              .filter(QuizAttempt.quiz_id == quiz.id, QuizAttempt.user_id == user.id).scalar() or 0) + 1
    now = utcnow()
    attempt = QuizAttempt(quiz_id=quiz.id, user_id=user.id, number=number, status=AttemptStatus.GRADED,
                          started_at=now, submitted_at=now, score=score, max_score=max_score,
                          percent=score * 100 / max_score, passed=passed)
    db.session.add(attempt)
    db.session.flush()
    return attempt


def make_assignment(course: Course, *, published: bool = True) -> Assignment:
    assignment = Assignment(course_id=course.id, title="Essay", instructions="Write.", points=Decimal(10),
                            published=published)
    db.session.add(assignment)
    db.session.flush()
    return assignment


def make_submission(assignment: Assignment, user: User) -> Submission:
    submission = Submission(assignment_id=assignment.id, user_id=user.id, text_answer="My answer",
                            submitted_at=utcnow())
    db.session.add(submission)
    db.session.flush()
    return submission


def enrollment_of(user: User, course: Course) -> Enrollment | None:
    return db.session.scalar(
        db.select(Enrollment).where(Enrollment.user_id == user.id, Enrollment.course_id == course.id)
        .execution_options(populate_existing=True)
    )

