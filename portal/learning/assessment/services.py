"""Quizzes: authoring (faculty), attempts and answers (students), grading (automatic and by
hand), and which attempt counts.

HTTP-free: every function takes the acting user, validates, changes rows and flushes; the caller
commits. The current time comes from ``portal.db.base.utcnow`` at call time, so tests can fix
the clock.

Deadlines are the server's: an attempt's ``deadline_at`` is fixed when it starts (the earlier of
start plus the time limit and the quiz's close) and checked on every call that touches the
attempt. A call that finds the deadline passed closes and grades the attempt first and then
raises ``DeadlinePassed``; the caller commits that closing (the error is the message, not a
reason to roll back). A periodic job closes attempts nobody comes back to.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from portal import events
from portal.accounts.models import User
from portal.db import base, db
from portal.errors import Conflict, DomainError, NotFound
from portal.learning.assessment import gradebook, grading
from portal.learning.assessment.models import (
    Answer,
    AttemptScoring,
    AttemptStatus,
    QuestionKind,
    QuestionOption,
    Quiz,
    QuizAttempt,
    QuizQuestion,
    ShortAnswerMatch,
    ShowAnswers,
)
from portal.learning.education.models import Enrollment, EnrollmentStatus, Module
from portal.learning.lms import access
from portal.platform.notifications.services import notify

CHOICE_KINDS = frozenset({QuestionKind.SINGLE, QuestionKind.MULTIPLE, QuestionKind.TRUE_FALSE})
MAX_OPTIONS = 12
MAX_ACCEPTED = 20
MAX_SHORT_ANSWER = 500
MAX_ESSAY = 20_000
MAX_POINTS = Decimal("9999.99")
NUMBER_LIMIT = Decimal("1e14")  #: answers are NUMERIC(20, 6)
#: How many attempts the deadline job closes per run (the rest wait a minute).
CLOSE_BATCH = 500


class ValidationError(DomainError):
    status_code = 422


class DeadlinePassed(Conflict):
    """The attempt's time is over; it has been closed and graded (commit, then show this)."""

    def __init__(self, attempt: QuizAttempt):
        deadline = attempt.deadline_at.strftime("%H:%M:%S UTC on %d %b %Y") if attempt.deadline_at else "its close"
        super().__init__(f"Time is up: this attempt ended at {deadline}. Answers sent after that are not saved; "
                         "the attempt has been submitted with the answers saved before.")
        self.attempt = attempt


def now() -> datetime:
    return base.utcnow()


# ------------------------------------------------------------------ faculty: quizzes


@dataclass
class QuizSettings:
    title: str
    description: str = ""
    module_id: uuid.UUID | None = None
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    time_limit_minutes: int | None = None
    max_attempts: int | None = None
    scoring: AttemptScoring | str = AttemptScoring.HIGHEST
    passing_percent: Decimal | int | str = Decimal(60)
    shuffle_questions: bool = False
    shuffle_options: bool = False
    show_answers: ShowAnswers | str = ShowAnswers.AFTER_SUBMIT


def _check_settings(settings: QuizSettings, course_id: uuid.UUID) -> dict:
    title = (settings.title or "").strip()
    if not title:
        raise ValidationError("Give the quiz a title.", field="title")
    if len(title) > 160:
        raise ValidationError("A title can be at most 160 characters.", field="title")
    if settings.time_limit_minutes is not None and not 1 <= settings.time_limit_minutes <= 1440:
        raise ValidationError("A time limit is between 1 and 1440 minutes (leave it empty for none).",
                              field="time_limit_minutes")
    if settings.max_attempts is not None and settings.max_attempts < 1:
        raise ValidationError("Allow at least one attempt (leave it empty for unlimited).", field="max_attempts")
    try:
        passing = Decimal(str(settings.passing_percent))
    except InvalidOperation:
        raise ValidationError("The passing score is a percentage.", field="passing_percent") from None
    if not passing.is_finite() or not 0 <= passing <= 100:
        raise ValidationError("The passing score is between 0 and 100 percent.", field="passing_percent")
    if settings.opens_at and settings.closes_at and settings.closes_at <= settings.opens_at:
        raise ValidationError("The quiz must close after it opens.", field="closes_at")
    try:
        scoring, show = AttemptScoring(settings.scoring), ShowAnswers(settings.show_answers)
    except ValueError:
        raise ValidationError("Choose how attempts count and when answers are shown.") from None
    if settings.module_id is not None:
        module_course = db.session.scalar(select(Module.course_id).where(Module.id == settings.module_id))
        if module_course != course_id:
            raise ValidationError("That module is not part of this course.", field="module_id")
    return {
        "title": title, "description": settings.description or "", "module_id": settings.module_id,
        "opens_at": settings.opens_at, "closes_at": settings.closes_at,
        "time_limit_minutes": settings.time_limit_minutes, "max_attempts": settings.max_attempts,
        "scoring": scoring, "passing_percent": passing.quantize(Decimal("0.01")),
        "shuffle_questions": bool(settings.shuffle_questions), "shuffle_options": bool(settings.shuffle_options),
        "show_answers": show,
    }


def _quiz_for_staff(actor: User, quiz_id: uuid.UUID, allowed=access.CAN_EDIT, what="edit this quiz") -> Quiz:
    quiz = db.session.get(Quiz, quiz_id)
    if quiz is None or not access.may(actor, quiz.course_id, allowed):
        # A quiz of a course the actor does not teach is not theirs to know of.
        if quiz is not None and access.management_role(actor, quiz.course_id) is not None:
            access.require(actor, quiz.course_id, allowed, what)
        raise NotFound("That quiz does not exist.")
    return quiz


def get_quiz_for_staff(actor: User, quiz_id: uuid.UUID, allowed=access.CAN_EDIT) -> Quiz:
    return _quiz_for_staff(actor, quiz_id, allowed)


def create_quiz(actor: User, course_id: uuid.UUID, settings: QuizSettings) -> Quiz:
    access.require(actor, course_id, access.CAN_EDIT, "add a quiz to this course")
    quiz = Quiz(course_id=course_id, **_check_settings(settings, course_id))
    db.session.add(quiz)
    db.session.flush()
    return quiz


def update_quiz(actor: User, quiz_id: uuid.UUID, settings: QuizSettings) -> Quiz:
    quiz = _quiz_for_staff(actor, quiz_id)
    for name, value in _check_settings(settings, quiz.course_id).items():
        setattr(quiz, name, value)
    db.session.flush()
    return quiz


def set_published(actor: User, quiz_id: uuid.UUID, published: bool) -> Quiz:
    quiz = _quiz_for_staff(actor, quiz_id)
    if published:
        count = db.session.scalar(select(func.count()).where(QuizQuestion.quiz_id == quiz.id))
        if not count:
            raise ValidationError("Add at least one question before publishing the quiz.")
    quiz.published = published
    db.session.flush()
    return quiz


# ------------------------------------------------------------------ faculty: questions


@dataclass
class OptionInput:
    text: str
    is_correct: bool = False
    feedback: str = ""


@dataclass
class QuestionInput:
    kind: QuestionKind | str
    prompt: str
    points: Decimal | int | str = Decimal(1)
    options: list[OptionInput] | None = None
    accepted_answers: list[str] | None = None
    match: ShortAnswerMatch | str | None = None
    numeric_answer: Decimal | str | None = None
    numeric_tolerance: Decimal | str | None = None
    feedback: str = ""


def _check_question(data: QuestionInput) -> tuple[dict, list[OptionInput]]:
    try:
        kind = QuestionKind(data.kind)
    except ValueError:
        raise ValidationError("Choose a question type.", field="kind") from None
    prompt = (data.prompt or "").strip()
    if not prompt:
        raise ValidationError("Write the question.", field="prompt")
    if len(prompt) > 20_000:
        raise ValidationError("A question can be at most 20,000 characters.", field="prompt")
    points = grading.to_decimal(data.points)
    if points is None or points <= 0:
        raise ValidationError("Points must be more than zero.", field="points")
    if points > MAX_POINTS or points != points.quantize(grading.CENT):
        raise ValidationError("Points are at most 9999.99, with at most two decimals.", field="points")
    fields = {"kind": kind, "prompt": prompt, "points": points, "feedback": (data.feedback or "").strip(),
              "accepted_answers": [], "match": None, "numeric_answer": None, "numeric_tolerance": None}
    options: list[OptionInput] = []
    if kind == QuestionKind.TRUE_FALSE and not [o for o in (data.options or []) if (o.text or "").strip()]:
        raise ValidationError("Say whether the statement is true or false.", field="options")
    if kind in CHOICE_KINDS:
        options = [OptionInput((o.text or "").strip(), bool(o.is_correct), (o.feedback or "").strip())
                   for o in (data.options or []) if (o.text or "").strip()]
        if kind == QuestionKind.TRUE_FALSE and len(options) != 2:
            raise ValidationError("A true/false question has exactly two options.", field="options")
        if len(options) < 2:
            raise ValidationError("Give at least two options.", field="options")
        if len(options) > MAX_OPTIONS:
            raise ValidationError(f"A question can have at most {MAX_OPTIONS} options.", field="options")
        if any(len(o.text) > 500 or len(o.feedback) > 500 for o in options):
            raise ValidationError("An option and its feedback are at most 500 characters each.", field="options")
        correct = sum(o.is_correct for o in options)
        if kind in (QuestionKind.SINGLE, QuestionKind.TRUE_FALSE) and correct != 1:
            raise ValidationError("Mark exactly one option as correct.", field="options")
        if kind == QuestionKind.MULTIPLE and correct < 1:
            raise ValidationError("Mark at least one option as correct.", field="options")
    elif kind == QuestionKind.SHORT:
        try:
            match = ShortAnswerMatch(data.match or "")
        except ValueError:
            raise ValidationError("Choose how answers are compared.", field="match") from None
        accepted = [a.strip() for a in (data.accepted_answers or []) if a and a.strip()]
        if not accepted:
            raise ValidationError("Give at least one accepted answer.", field="accepted_answers")
        if len(accepted) > MAX_ACCEPTED or any(len(a) > MAX_SHORT_ANSWER for a in accepted):
            raise ValidationError(f"At most {MAX_ACCEPTED} accepted answers of at most {MAX_SHORT_ANSWER} "
                                  "characters each.", field="accepted_answers")
        if match == ShortAnswerMatch.PATTERN:
            for pattern in accepted:
                problem = grading.pattern_problem(pattern)
                if problem:
                    raise ValidationError(problem, field="accepted_answers")
        fields.update(accepted_answers=accepted, match=match)
    elif kind == QuestionKind.NUMERIC:
        answer = grading.to_decimal(data.numeric_answer)
        if answer is None or abs(answer) >= NUMBER_LIMIT:
            raise ValidationError("Give the correct answer as a number.", field="numeric_answer")
        blank = data.numeric_tolerance is None or str(data.numeric_tolerance).strip() == ""
        tolerance = Decimal(0) if blank else grading.to_decimal(data.numeric_tolerance)
        if tolerance is None or tolerance < 0 or tolerance >= NUMBER_LIMIT:
            raise ValidationError("The tolerance is a number of zero or more.", field="numeric_tolerance")
        fields.update(numeric_answer=answer, numeric_tolerance=tolerance)
    return fields, options


def _question_for_staff(actor: User, question_id: uuid.UUID) -> tuple[QuizQuestion, Quiz]:
    question = db.session.get(QuizQuestion, question_id)
    if question is None:
        raise NotFound("That question does not exist.")
    return question, _quiz_for_staff(actor, question.quiz_id)


def _replace_options(question: QuizQuestion, options: list[OptionInput]) -> None:
    """Keep the option rows by position (their ids stay, so saved answers still point at them);
    update their text, add the new ones and delete the ones past the end."""
    existing = list(db.session.scalars(
        select(QuestionOption).where(QuestionOption.question_id == question.id).order_by(QuestionOption.position)))
    for index, data in enumerate(options):
        if index < len(existing):
            row = existing[index]
            row.position, row.text, row.is_correct, row.feedback = index + 1, data.text, data.is_correct, data.feedback
        else:
            db.session.add(QuestionOption(question_id=question.id, position=index + 1, text=data.text,
                                          is_correct=data.is_correct, feedback=data.feedback))
    for row in existing[len(options):]:
        db.session.delete(row)


def add_question(actor: User, quiz_id: uuid.UUID, data: QuestionInput) -> QuizQuestion:
    quiz = _quiz_for_staff(actor, quiz_id)
    fields, options = _check_question(data)
    last = db.session.scalar(select(func.max(QuizQuestion.position)).where(QuizQuestion.quiz_id == quiz.id))
    question = QuizQuestion(quiz_id=quiz.id, position=(last or 0) + 1, **fields)
    db.session.add(question)
    db.session.flush()
    _replace_options(question, options)
    db.session.flush()
    return question


def update_question(actor: User, question_id: uuid.UUID, data: QuestionInput) -> QuizQuestion:
    question, _quiz = _question_for_staff(actor, question_id)
    fields, options = _check_question(data)
    if fields["kind"] != question.kind:
        has_answers = db.session.scalar(select(func.count()).where(Answer.question_id == question.id))
        if has_answers:
            raise ValidationError("Students have answered this question, so its type cannot change. "
                                  "Add a new question instead.", field="kind")
    for name, value in fields.items():
        setattr(question, name, value)
    _replace_options(question, options)
    db.session.flush()
    return question


def delete_question(actor: User, question_id: uuid.UUID) -> Quiz:
    question, quiz = _question_for_staff(actor, question_id)
    position = question.position
    db.session.delete(question)
    db.session.flush()
    # Close the gap (the unique position constraint is deferred to the commit).
    for later in db.session.scalars(select(QuizQuestion).where(QuizQuestion.quiz_id == quiz.id,
                                                               QuizQuestion.position > position)):
        later.position -= 1
    db.session.flush()
    return quiz


def move_question(actor: User, question_id: uuid.UUID, direction: str) -> Quiz:
    """Swap a question with its neighbour above (``up``) or below (``down``)."""
    question, quiz = _question_for_staff(actor, question_id)
    if direction not in ("up", "down"):
        raise ValidationError("Move a question up or down.")
    target = question.position - 1 if direction == "up" else question.position + 1
    neighbour = db.session.scalar(select(QuizQuestion).where(QuizQuestion.quiz_id == quiz.id,
                                                             QuizQuestion.position == target))
    if neighbour is not None:
        neighbour.position, question.position = question.position, neighbour.position
        db.session.flush()
    return quiz


# ------------------------------------------------------------------ students: attempts


def is_enrolled(user: User, course_id: uuid.UUID) -> bool:
    return db.session.scalar(select(func.count()).where(
        Enrollment.course_id == course_id, Enrollment.user_id == user.id,
        Enrollment.status.in_([EnrollmentStatus.ACTIVE, EnrollmentStatus.COMPLETED]))) > 0


def get_quiz_for_student(user: User, quiz_id: uuid.UUID) -> Quiz:
    """A published quiz of a course the student is enrolled in; NotFound otherwise."""
    quiz = db.session.get(Quiz, quiz_id)
    if quiz is None or not quiz.published or not is_enrolled(user, quiz.course_id):
        raise NotFound("That quiz does not exist, or you are not enrolled in its course.")
    return quiz


def _open_attempt(user: User, quiz_id: uuid.UUID) -> QuizAttempt | None:
    return db.session.scalar(select(QuizAttempt).where(
        QuizAttempt.quiz_id == quiz_id, QuizAttempt.user_id == user.id,
        QuizAttempt.status == AttemptStatus.IN_PROGRESS))


def attempts_used(user: User, quiz_id: uuid.UUID) -> int:
    return db.session.scalar(select(func.count()).where(QuizAttempt.quiz_id == quiz_id,
                                                        QuizAttempt.user_id == user.id))


def why_cannot_start(quiz: Quiz, used: int, at: datetime) -> str | None:
    """The reason a new attempt cannot start now, or None."""
    if quiz.opens_at and at < quiz.opens_at:
        return f"This quiz opens at {quiz.opens_at:%H:%M UTC on %d %b %Y}."
    if quiz.closes_at and at >= quiz.closes_at:
        return "This quiz has closed."
    if quiz.max_attempts is not None and used >= quiz.max_attempts:
        return f"You have used all {quiz.max_attempts} attempt{'s' if quiz.max_attempts != 1 else ''} at this quiz."
    return None


def _layout(quiz: Quiz) -> dict:
    rows = db.session.execute(
        select(QuizQuestion.id, QuizQuestion.kind, QuestionOption.id)
        .outerjoin(QuestionOption, QuestionOption.question_id == QuizQuestion.id)
        .where(QuizQuestion.quiz_id == quiz.id)
        .order_by(QuizQuestion.position, QuestionOption.position)
    ).all()
    questions: list[str] = []
    options: dict[str, list[str]] = {}
    kinds: dict[str, QuestionKind] = {}
    for question_id, kind, option_id in rows:
        key = str(question_id)
        if key not in options:
            questions.append(key)
            options[key] = []
            kinds[key] = kind
        if option_id is not None:
            options[key].append(str(option_id))
    shuffler = random.SystemRandom()
    if quiz.shuffle_questions:
        shuffler.shuffle(questions)
    if quiz.shuffle_options:
        for key, ids in options.items():
            if kinds[key] != QuestionKind.TRUE_FALSE:  # "True" stays before "False"
                shuffler.shuffle(ids)
    return {"questions": questions, "options": options}


def start_attempt(user: User, quiz_id: uuid.UUID) -> QuizAttempt:
    """Start an attempt, or return the one already in progress (a double click, a second tab).

    Two starts at the same moment both try to insert; the partial unique index lets one
    through and the other finds the winner's attempt and returns it."""
    quiz = get_quiz_for_student(user, quiz_id)
    at = now()
    current = _open_attempt(user, quiz.id)
    if current is not None:
        if not _past_deadline(current, at):
            return current
        finish_attempt(current, at, auto=True)
    used = attempts_used(user, quiz.id)
    reason = why_cannot_start(quiz, used, at)
    if reason:
        raise Conflict(reason)
    if not db.session.scalar(select(func.count()).where(QuizQuestion.quiz_id == quiz.id)):
        raise Conflict("This quiz has no questions yet.")
    deadline = at + timedelta(minutes=quiz.time_limit_minutes) if quiz.time_limit_minutes else None
    if quiz.closes_at is not None:
        deadline = min(deadline, quiz.closes_at) if deadline else quiz.closes_at
    attempt = QuizAttempt(quiz_id=quiz.id, user_id=user.id, number=used + 1, status=AttemptStatus.IN_PROGRESS,
                          started_at=at, deadline_at=deadline, layout=_layout(quiz))
    try:
        with db.session.begin_nested():
            db.session.add(attempt)
            db.session.flush()
    except IntegrityError:
        winner = _open_attempt(user, quiz.id)
        if winner is None:
            raise Conflict("Another attempt was started at the same moment. Reload the page.") from None
        return winner
    return attempt


def _past_deadline(attempt: QuizAttempt, at: datetime) -> bool:
    return attempt.deadline_at is not None and at >= attempt.deadline_at


def get_attempt(user: User, attempt_id: uuid.UUID) -> QuizAttempt:
    """The student's own attempt; another student's is NotFound (as if it did not exist)."""
    attempt = db.session.get(QuizAttempt, attempt_id)
    if attempt is None or attempt.user_id != user.id:
        raise NotFound("That attempt does not exist.")
    return attempt


def get_attempt_with_quiz(user: User, attempt_id: uuid.UUID) -> tuple[QuizAttempt, Quiz]:
    """``get_attempt`` and the attempt's quiz, in one statement."""
    row = db.session.execute(select(QuizAttempt, Quiz).join(Quiz, Quiz.id == QuizAttempt.quiz_id)
                             .where(QuizAttempt.id == attempt_id)).first()
    if row is None or row[0].user_id != user.id:
        raise NotFound("That attempt does not exist.")
    return row[0], row[1]


def enforce_deadline(attempt: QuizAttempt) -> None:
    """Close and grade the attempt if its time is over, then raise ``DeadlinePassed``."""
    if attempt.status == AttemptStatus.IN_PROGRESS and _past_deadline(attempt, now()):
        finish_attempt(attempt, now(), auto=True)
        raise DeadlinePassed(attempt)


def _attempt_for_answering(user: User, attempt_id: uuid.UUID) -> QuizAttempt:
    attempt = get_attempt(user, attempt_id)
    if attempt.status != AttemptStatus.IN_PROGRESS:
        raise Conflict("This attempt has been submitted; its answers can no longer change.")
    enforce_deadline(attempt)
    return attempt


@dataclass
class AnswerInput:
    selected_option_ids: list[str] | None = None
    text: str | None = None
    number: str | None = None


def _checked_answer(question: QuizQuestion, option_ids: list[str], data: AnswerInput) -> dict:
    values: dict = {"selected_option_ids": [], "text_answer": None, "numeric_answer": None}
    if question.kind in CHOICE_KINDS:
        chosen: list[str] = []
        for raw in data.selected_option_ids or []:
            if raw and raw not in chosen:
                chosen.append(raw)
        if any(option not in option_ids for option in chosen):
            raise NotFound("That option is not part of this question.")
        if question.kind != QuestionKind.MULTIPLE and len(chosen) > 1:
            raise ValidationError("Choose one option.")
        values["selected_option_ids"] = chosen
    elif question.kind == QuestionKind.NUMERIC:
        raw = (data.number or "").strip()
        if raw:
            number = grading.to_decimal(raw)
            if number is None or abs(number) >= NUMBER_LIMIT:
                raise ValidationError("Enter a number, like 42 or 3.14.")
            values["numeric_answer"] = number.quantize(Decimal("0.000001"))
    else:
        text = data.text or ""
        limit = MAX_SHORT_ANSWER if question.kind == QuestionKind.SHORT else MAX_ESSAY
        if len(text) > limit:
            raise ValidationError(f"An answer here can be at most {limit:,} characters.")
        values["text_answer"] = text
    return values


def save_answer(user: User, attempt_id: uuid.UUID, question_id: uuid.UUID, data: AnswerInput) -> Answer:
    """Save (insert or replace) the student's answer to one question of their open attempt."""
    attempt = _attempt_for_answering(user, attempt_id)
    key = str(question_id)
    if key not in attempt.layout.get("questions", []):
        raise NotFound("That question is not part of this quiz.")
    question = db.session.get(QuizQuestion, question_id)
    if question is None or question.quiz_id != attempt.quiz_id:
        raise NotFound("That question is not part of this quiz.")
    option_ids = [str(i) for i in db.session.scalars(
        select(QuestionOption.id).where(QuestionOption.question_id == question.id))]
    values = _checked_answer(question, option_ids, data)
    return _upsert_answer(attempt, question.id, values)


def _upsert_answer(attempt: QuizAttempt, question_id: uuid.UUID, values: dict) -> Answer:
    at = now()
    statement = insert(Answer).values(id=uuid.uuid4(), attempt_id=attempt.id, question_id=question_id,
                                      saved_at=at, created_at=at, updated_at=at, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[Answer.attempt_id, Answer.question_id],
        set_={column: statement.excluded[column.key] for column in (
            Answer.__mapper__.columns[name]
            for name in ("selected_option_ids", "text_answer", "numeric_answer", "saved_at", "updated_at"))},
    ).returning(Answer)
    return db.session.scalars(statement, execution_options={"populate_existing": True}).one()


def save_answers(user: User, attempt_id: uuid.UUID, answers: dict[uuid.UUID, AnswerInput]) -> int:
    """Save several answers at once (the page's form without JavaScript). Questions that are not
    part of the attempt are refused like single saves are."""
    attempt = _attempt_for_answering(user, attempt_id)
    for question_id, data in answers.items():
        save_answer(user, attempt.id, question_id, data)
    return len(answers)


def submit_attempt(user: User, attempt_id: uuid.UUID) -> QuizAttempt:
    """The student hands the attempt in. After the deadline it is closed as the deadline would
    have closed it (``auto_submitted``), with the answers saved in time."""
    attempt = get_attempt(user, attempt_id)
    if attempt.status != AttemptStatus.IN_PROGRESS:
        raise Conflict("This attempt has already been submitted.")
    at = now()
    finish_attempt(attempt, at, auto=_past_deadline(attempt, at))
    return attempt


# ------------------------------------------------------------------ grading


def _questions_and_options(quiz_id: uuid.UUID) -> tuple[list[QuizQuestion], dict[uuid.UUID, list[QuestionOption]]]:
    questions = list(db.session.scalars(select(QuizQuestion).where(QuizQuestion.quiz_id == quiz_id)
                                        .order_by(QuizQuestion.position)))
    options: dict[uuid.UUID, list[QuestionOption]] = {q.id: [] for q in questions}
    for option in db.session.scalars(select(QuestionOption).join(QuizQuestion)
                                     .where(QuizQuestion.quiz_id == quiz_id).order_by(QuestionOption.position)):
        options[option.question_id].append(option)
    return questions, options


def grade_one(question: QuizQuestion, options: list[QuestionOption], answer: Answer | None) -> grading.Grade | None:
    """The automatic grade of one answer (None: an essay, graded by hand)."""
    if question.kind == QuestionKind.ESSAY:
        return None
    return grading.grade(
        question.kind, question.points,
        correct_option_ids=[o.id for o in options if o.is_correct],
        selected_option_ids=answer.selected_option_ids if answer else [],
        text=answer.text_answer if answer else None,
        accepted_answers=question.accepted_answers, match=question.match,
        number=answer.numeric_answer if answer else None,
        numeric_answer=question.numeric_answer, numeric_tolerance=question.numeric_tolerance)


def finish_attempt(attempt: QuizAttempt, at: datetime, *, auto: bool) -> QuizAttempt:
    """Close an open attempt and grade what can be graded automatically.

    Unanswered questions and empty essays earn nothing. With essays to grade by hand the
    attempt waits as ``submitted``; otherwise it is ``graded`` at once."""
    if attempt.status != AttemptStatus.IN_PROGRESS:
        return attempt
    questions, options = _questions_and_options(attempt.quiz_id)
    answers = {a.question_id: a for a in db.session.scalars(select(Answer).where(Answer.attempt_id == attempt.id))}
    in_attempt = set(attempt.layout.get("questions", [])) or {str(q.id) for q in questions}
    questions = [q for q in questions if str(q.id) in in_attempt]
    waiting = False
    for question in questions:
        answer = answers.get(question.id)
        result = grade_one(question, options[question.id], answer)
        if answer is None:
            continue
        if result is not None:
            answer.points_awarded, answer.is_correct = result.points, result.correct
        elif (answer.text_answer or "").strip():
            answer.points_awarded, answer.is_correct = None, None
            waiting = True
        else:  # an empty essay: nothing to read
            answer.points_awarded, answer.is_correct = Decimal(0), False
    attempt.status = AttemptStatus.SUBMITTED
    attempt.submitted_at = at
    attempt.auto_submitted = auto
    attempt.max_score = sum((q.points for q in questions), Decimal(0))
    db.session.flush()
    if not waiting:
        _finalise(attempt, list(answers.values()))
    # Every way an attempt ends comes here: the student's submit, a deadline met on a later
    # request, and the deadline job.
    events.quiz_submitted.send(user=db.session.get(User, attempt.user_id),
                               quiz=db.session.get(Quiz, attempt.quiz_id), attempt=attempt)
    return attempt


def _finalise(attempt: QuizAttempt, answers: list[Answer]) -> None:
    """All answers graded: total, percent, pass or fail; ``quiz_passed`` once, here."""
    quiz = db.session.get(Quiz, attempt.quiz_id)
    score = sum((a.points_awarded or Decimal(0) for a in answers), Decimal(0))
    attempt.score = min(score, attempt.max_score or Decimal(0))
    attempt.percent = grading.percent_of(attempt.score, attempt.max_score or Decimal(0))
    attempt.passed = attempt.percent >= quiz.passing_percent
    attempt.status = AttemptStatus.GRADED
    db.session.flush()
    gradebook.recompute(quiz.course_id, attempt.user_id)
    if attempt.passed:
        user = db.session.get(User, attempt.user_id)
        events.quiz_passed.send(user=user, quiz=quiz, score=attempt.score, attempt=attempt)


def close_due_attempts(at: datetime | None = None, limit: int = CLOSE_BATCH) -> int:
    """Close and grade attempts whose deadline has passed (the deadline job). Rows another
    transaction holds (a student saving at this moment) are skipped and closed next time."""
    at = at or now()
    due = list(db.session.scalars(
        select(QuizAttempt)
        .where(QuizAttempt.status == AttemptStatus.IN_PROGRESS, QuizAttempt.deadline_at <= at)
        .order_by(QuizAttempt.deadline_at)
        .limit(limit)
        .with_for_update(skip_locked=True)))
    for attempt in due:
        finish_attempt(attempt, at, auto=True)
    return len(due)


def grade_essay(actor: User, answer_id: uuid.UUID, points, feedback: str = "") -> Answer:
    """A grader scores an essay answer (0 to the question's points). When the attempt's last
    essay is graded, the attempt is finalised."""
    answer = db.session.get(Answer, answer_id)
    if answer is None:
        raise NotFound("That answer does not exist.")
    attempt = db.session.get(QuizAttempt, answer.attempt_id)
    question = db.session.get(QuizQuestion, answer.question_id)
    _quiz_for_staff(actor, attempt.quiz_id, access.CAN_GRADE, "grade this quiz")
    if question.kind != QuestionKind.ESSAY:
        raise ValidationError("Only essay answers are graded by hand.")
    if attempt.status != AttemptStatus.SUBMITTED:
        raise Conflict("This attempt is not waiting for grading." if attempt.status == AttemptStatus.IN_PROGRESS
                       else "This attempt has been graded in full; its score is final.")
    value = grading.to_decimal(points)
    if value is None:
        raise ValidationError("Give the points as a number.", field="points")
    if value < 0 or value > question.points:
        raise ValidationError(f"Points are between 0 and {question.points.normalize():f} for this question.",
                              field="points")
    if value != value.quantize(grading.CENT):
        raise ValidationError("Points have at most two decimals.", field="points")
    feedback = (feedback or "").strip()
    if len(feedback) > 5000:
        raise ValidationError("Feedback can be at most 5,000 characters.", field="feedback")
    answer.points_awarded = value
    answer.is_correct = value == question.points
    answer.grader_id = actor.id
    answer.grader_feedback = feedback or None
    db.session.flush()
    answers = list(db.session.scalars(select(Answer).where(Answer.attempt_id == attempt.id)))
    if all(a.points_awarded is not None for a in answers):
        _finalise(attempt, answers)
        quiz = db.session.get(Quiz, attempt.quiz_id)
        notify(attempt.user_id, "quiz_graded", f"Your attempt at {quiz.title} has been graded",
               f"Score: {attempt.score} of {attempt.max_score} ({attempt.percent}%).")
        events.quiz_graded.send(user=db.session.get(User, attempt.user_id), quiz=quiz, attempt=attempt)
    return answer


# ------------------------------------------------------------------ which attempt counts


@dataclass(frozen=True)
class QuizScore:
    score: Decimal
    max_score: Decimal
    percent: Decimal
    passed: bool
    attempts: int  #: graded attempts taken into account


def quiz_score(user: User | uuid.UUID, quiz: Quiz) -> QuizScore | None:
    """The student's score at the quiz as its ``scoring`` setting says (highest, latest, average
    or first graded attempt); None when no attempt is graded yet. For the gradebook and course
    completion."""
    user_id = user if isinstance(user, uuid.UUID) else user.id
    graded = list(db.session.execute(
        select(QuizAttempt.score, QuizAttempt.max_score, QuizAttempt.percent)
        .where(QuizAttempt.quiz_id == quiz.id, QuizAttempt.user_id == user_id,
               QuizAttempt.status == AttemptStatus.GRADED)
        .order_by(QuizAttempt.number)).all())
    if not graded:
        return None
    if quiz.scoring == AttemptScoring.FIRST:
        score, max_score, percent = graded[0]
    elif quiz.scoring == AttemptScoring.LATEST:
        score, max_score, percent = graded[-1]
    elif quiz.scoring == AttemptScoring.AVERAGE:
        count = Decimal(len(graded))
        score = (sum((row[0] for row in graded), Decimal(0)) / count).quantize(grading.CENT)
        max_score = graded[-1][1]
        percent = (sum((row[2] for row in graded), Decimal(0)) / count).quantize(grading.CENT)
    else:
        score, max_score, percent = max(graded, key=lambda row: (row[2], row[0]))
    return QuizScore(score=score, max_score=max_score, percent=percent,
                     passed=percent >= quiz.passing_percent, attempts=len(graded))


def answers_visible(quiz: Quiz, attempt: QuizAttempt, at: datetime | None = None) -> bool:
    """Whether the student may see the correct answers and feedback for this attempt."""
    if attempt.status == AttemptStatus.IN_PROGRESS or quiz.show_answers == ShowAnswers.NEVER:
        return False
    if quiz.show_answers == ShowAnswers.AFTER_CLOSE:
        return quiz.closes_at is not None and (at or now()) >= quiz.closes_at
    return True
