"""Small factories for the quiz tests: courses with staff and students, quizzes with one
question of each kind."""

from __future__ import annotations

from decimal import Decimal

from portal.accounts.models import User
from portal.db import db
from portal.learning.assessment.models import (
    QuestionKind,
    QuestionOption,
    Quiz,
    QuizQuestion,
    ShortAnswerMatch,
)
from portal.learning.education.models import Course, Enrollment, EnrollmentStatus
from tests.factories import create_user
from tests.learning.factories import assign as assign_factories
from tests.learning.factories.assign import add_staff, make_course, make_quiz  # noqa: F401 - shared


def enroll(user: User, course: Course, status: EnrollmentStatus = EnrollmentStatus.ACTIVE) -> Enrollment:
    """``factories_assign.enroll`` with the student first, as the quiz tests read."""
    return assign_factories.enroll(course, user, status)


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
