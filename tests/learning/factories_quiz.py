"""Small factories for the quiz tests: courses with staff and students, quizzes with one
question of each kind."""

from __future__ import annotations

import uuid
from decimal import Decimal

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.learning.assessment.models import (
    QuestionKind,
    QuestionOption,
    Quiz,
    QuizQuestion,
    ShortAnswerMatch,
)
from portal.learning.education.models import Course, CourseLevel, CourseStatus, Enrollment, EnrollmentStatus
from portal.learning.lms.models import CourseManagement, ManagementRole
from tests.factories import create_user


def make_course(owner: User | None = None, role: ManagementRole = ManagementRole.OWNER, **fields) -> Course:
    suffix = uuid.uuid4().hex[:8]
    course = Course(slug=fields.pop("slug", f"quiz-course-{suffix}"), title=fields.pop("title", f"Course {suffix}"),
                    category="Testing", level=CourseLevel.BEGINNER, status=CourseStatus.PUBLISHED, **fields)
    db.session.add(course)
    db.session.flush()
    if owner is not None:
        add_staff(course, owner, role)
    return course


def add_staff(course: Course, user: User, role: ManagementRole = ManagementRole.INSTRUCTOR) -> None:
    db.session.add(CourseManagement(course_id=course.id, user_id=user.id, role=role))
    db.session.flush()


def enroll(user: User, course: Course, status: EnrollmentStatus = EnrollmentStatus.ACTIVE) -> Enrollment:
    enrollment = Enrollment(course_id=course.id, user_id=user.id, status=status,
                            left_at=utcnow() if status == EnrollmentStatus.LEFT else None,
                            completed_at=utcnow() if status == EnrollmentStatus.COMPLETED else None)
    db.session.add(enrollment)
    db.session.flush()
    return enrollment


def make_quiz(course: Course, *, published: bool = True, **fields) -> Quiz:
    quiz = Quiz(course_id=course.id, title=fields.pop("title", "Quiz " + uuid.uuid4().hex[:6]),
                published=published, **fields)
    db.session.add(quiz)
    db.session.flush()
    return quiz


def add_question(quiz: Quiz, kind: QuestionKind, *, points="1", options=(), prompt=None, **fields) -> QuizQuestion:
    """``options``: (text, is_correct) pairs."""
    position = len(quiz_question_ids(quiz)) + 1
    question = QuizQuestion(quiz_id=quiz.id, position=position, kind=kind, prompt=prompt or f"Question {position}?",
                            points=Decimal(points), **fields)
    db.session.add(question)
    db.session.flush()
    for index, (text, correct) in enumerate(options, 1):
        db.session.add(QuestionOption(question_id=question.id, position=index, text=text, is_correct=correct))
    db.session.flush()
    return question


def quiz_question_ids(quiz: Quiz) -> list:
    from sqlalchemy import select

    return list(db.session.scalars(select(QuizQuestion.id).where(QuizQuestion.quiz_id == quiz.id)))


def options_of(question: QuizQuestion) -> dict[str, str]:
    """Option text -> id (as a string, as forms send it)."""
    from sqlalchemy import select

    return {o.text: str(o.id) for o in db.session.scalars(
        select(QuestionOption).where(QuestionOption.question_id == question.id))}


def full_quiz(course: Course, **fields) -> tuple[Quiz, dict[str, QuizQuestion]]:
    """A quiz with one question of every kind (10 points in all, 2 of them an essay)."""
    quiz = make_quiz(course, **fields)
    questions = {
        "single": add_question(quiz, QuestionKind.SINGLE, options=[("Paris", True), ("Rome", False), ("Oslo", False)]),
        "multiple": add_question(quiz, QuestionKind.MULTIPLE, points="3",
                                 options=[("2", True), ("3", True), ("4", False), ("5", True)]),
        "true_false": add_question(quiz, QuestionKind.TRUE_FALSE, options=[("True", True), ("False", False)]),
        "short": add_question(quiz, QuestionKind.SHORT, accepted_answers=["Ada Lovelace"],
                              match=ShortAnswerMatch.CASE_INSENSITIVE),
        "numeric": add_question(quiz, QuestionKind.NUMERIC, points="2", numeric_answer=Decimal("3.14"),
                                numeric_tolerance=Decimal("0.01")),
        "essay": add_question(quiz, QuestionKind.ESSAY, points="2"),
    }
    return quiz, questions


def setup(**quiz_fields):
    """A faculty owner, an enrolled student and a quiz of every kind."""
    teacher = create_user("faculty")
    student = create_user("student")
    course = make_course(teacher)
    enroll(student, course)
    quiz, questions = full_quiz(course, **quiz_fields)
    return teacher, student, course, quiz, questions
