"""Reads for the quiz pages: a fixed number of statements each, whatever the number of
questions, options, answers or attempts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import and_, bindparam, func, select

from portal.accounts.models import User
from portal.db import db
from portal.learning.assessment.models import (
    Answer,
    AttemptStatus,
    QuestionKind,
    QuestionOption,
    Quiz,
    QuizAttempt,
    QuizQuestion,
)
from portal.learning.education.models import Course

PAGE_SIZE = 20


@dataclass
class Page:
    items: list
    page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def _page(statement, page: int, size: int = PAGE_SIZE) -> Page:
    page = max(1, page)
    rows = list(db.session.execute(statement.limit(size + 1).offset((page - 1) * size)).all())
    return Page(items=rows[:size], page=page, has_next=len(rows) > size)


@dataclass
class QuestionView:
    question: QuizQuestion
    options: list[QuestionOption] = field(default_factory=list)
    answer: Answer | None = None
    number: int = 0

    @property
    def selected(self) -> set[str]:
        return {str(i) for i in self.answer.selected_option_ids} if self.answer else set()


def _options_by_question(quiz_id: uuid.UUID) -> dict[uuid.UUID, list[QuestionOption]]:
    options: dict[uuid.UUID, list[QuestionOption]] = {}
    for option in db.session.scalars(select(QuestionOption).join(QuizQuestion)
                                     .where(QuizQuestion.quiz_id == quiz_id).order_by(QuestionOption.position)):
        options.setdefault(option.question_id, []).append(option)
    return options


def quiz_questions(quiz_id: uuid.UUID) -> list[QuestionView]:
    """Every question with its options, in the quiz's order (the editor): two statements."""
    questions = db.session.scalars(select(QuizQuestion).where(QuizQuestion.quiz_id == quiz_id)
                                   .order_by(QuizQuestion.position)).all()
    options = _options_by_question(quiz_id)
    return [QuestionView(q, options.get(q.id, []), number=i) for i, q in enumerate(questions, 1)]


#: An attempt's questions with their options and the attempt's saved answers, in one statement:
#: a row per option (a question without options has one row, with no option), the answer
#: joined on the question.
_ATTEMPT_QUESTIONS = (
    select(QuizQuestion, QuestionOption, Answer)
    .outerjoin(QuestionOption, QuestionOption.question_id == QuizQuestion.id)
    .outerjoin(Answer, and_(Answer.question_id == QuizQuestion.id, Answer.attempt_id == bindparam("attempt")))
    .where(QuizQuestion.quiz_id == bindparam("quiz"))
    .order_by(QuizQuestion.position, QuestionOption.position)
)


def attempt_questions(attempt: QuizAttempt) -> list[QuestionView]:
    """The attempt's questions in its own (possibly shuffled) order, each with its options in
    that order and the saved answer: one statement (``_ATTEMPT_QUESTIONS``)."""
    questions: dict[uuid.UUID, QuizQuestion] = {}
    options: dict[uuid.UUID, QuestionOption] = {}
    answers: dict[uuid.UUID, Answer] = {}
    for question, option, answer in db.session.execute(_ATTEMPT_QUESTIONS,
                                                       {"quiz": attempt.quiz_id, "attempt": attempt.id}):
        questions[question.id] = question
        if option is not None:
            options[option.id] = option
        if answer is not None:
            answers[question.id] = answer
    layout_options = attempt.layout.get("options", {})
    views = []
    order = attempt.layout.get("questions") or [str(q) for q in questions]
    for key in order:
        question = questions.get(uuid.UUID(key))
        if question is None:  # deleted since the attempt started
            continue
        ordered = [options[uuid.UUID(o)] for o in layout_options.get(key, []) if uuid.UUID(o) in options]
        known = {o.id for o in ordered}
        ordered += sorted((o for o in options.values() if o.question_id == question.id and o.id not in known),
                          key=lambda o: o.position)
        views.append(QuestionView(question, ordered, answers.get(question.id), number=len(views) + 1))
    return views


def course_of(course_id: uuid.UUID) -> Course | None:
    return db.session.get(Course, course_id)


def course_quizzes(course_id: uuid.UUID, *, published_only: bool, page: int = 1) -> Page:
    """The course's quizzes with their question counts (and total points)."""
    counts = (select(QuizQuestion.quiz_id, func.count().label("questions"), func.sum(QuizQuestion.points).label("points"))
              .group_by(QuizQuestion.quiz_id).subquery())
    statement = (select(Quiz, func.coalesce(counts.c.questions, 0), func.coalesce(counts.c.points, 0))
                 .outerjoin(counts, counts.c.quiz_id == Quiz.id)
                 .where(Quiz.course_id == course_id)
                 .order_by(Quiz.opens_at.asc().nulls_first(), Quiz.title, Quiz.id))
    if published_only:
        statement = statement.where(Quiz.published.is_(True))
    return _page(statement, page)


def my_attempts(user: User, quiz_id: uuid.UUID, page: int = 1) -> Page:
    statement = (select(QuizAttempt).where(QuizAttempt.quiz_id == quiz_id, QuizAttempt.user_id == user.id)
                 .order_by(QuizAttempt.number.desc()))
    result = _page(statement, page)
    result.items = [row[0] for row in result.items]
    return result


def student_quiz_summary(user: User, quiz_id: uuid.UUID) -> dict:
    """How many questions and points, attempts used, and the open attempt (one statement)."""
    row = db.session.execute(select(
        select(func.count()).where(QuizQuestion.quiz_id == quiz_id).scalar_subquery(),
        select(func.coalesce(func.sum(QuizQuestion.points), 0)).where(QuizQuestion.quiz_id == quiz_id)
        .scalar_subquery(),
        select(func.count()).where(QuizAttempt.quiz_id == quiz_id, QuizAttempt.user_id == user.id).scalar_subquery(),
        select(QuizAttempt.id).where(QuizAttempt.quiz_id == quiz_id, QuizAttempt.user_id == user.id,
                                     QuizAttempt.status == AttemptStatus.IN_PROGRESS).scalar_subquery(),
    )).one()
    return {"questions": row[0], "points": row[1], "used": row[2], "open_attempt_id": row[3]}


def grading_queue(quiz_id: uuid.UUID, page: int = 1) -> Page:
    """Essay answers waiting for a grader, oldest submission first: rows of
    (answer, question, attempt, student name)."""
    statement = (select(Answer, QuizQuestion, QuizAttempt, User.full_name)
                 .join(QuizQuestion, QuizQuestion.id == Answer.question_id)
                 .join(QuizAttempt, QuizAttempt.id == Answer.attempt_id)
                 .join(User, User.id == QuizAttempt.user_id)
                 .where(QuizAttempt.quiz_id == quiz_id, QuizAttempt.status == AttemptStatus.SUBMITTED,
                        QuizQuestion.kind == QuestionKind.ESSAY, Answer.points_awarded.is_(None))
                 .order_by(QuizAttempt.submitted_at, QuizAttempt.id, QuizQuestion.position))
    return _page(statement, page)


def quiz_attempts_for_staff(quiz_id: uuid.UUID, page: int = 1) -> Page:
    """Every student's attempts at the quiz, latest first: rows of (attempt, student name)."""
    statement = (select(QuizAttempt, User.full_name).join(User, User.id == QuizAttempt.user_id)
                 .where(QuizAttempt.quiz_id == quiz_id)
                 .order_by(QuizAttempt.started_at.desc(), QuizAttempt.id))
    return _page(statement, page)
