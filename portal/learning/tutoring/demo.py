"""Demo data for insights and learning paths: the demo students' attempts at the quizzes of the
modules whose lessons they have finished, then their insights and a path for every course they
are active in.

The attempts are written as rows, graded with the quizzes' own grading rules, the way the
learning demo writes progress: no events (rewards and notifications stay out of the demo's
money and inbox). Idempotent: a student who has an attempt at a quiz gets no other, a student
with a path keeps it; insights are recomputed (which replaces them).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.learning.assessment import gradebook, grading
from portal.learning.assessment.models import (
    Answer,
    AttemptStatus,
    QuestionKind,
    QuestionOption,
    Quiz,
    QuizAttempt,
    QuizQuestion,
)
from portal.learning.assessment.services import grade_one
from portal.learning.education.models import Course, Enrollment, EnrollmentStatus, Lesson, Progress
from portal.learning.tutoring.insights import refresh_insights
from portal.learning.tutoring.paths import ensure_path

#: How many questions each demo student gets right, by their place in the demo accounts: a
#: spread of weak, middling and strong topics.
RIGHT_ANSWERS = (2, 5, 3, 4, 1, 2)


def _answer_values(question: QuizQuestion, options: list[QuestionOption], right: bool) -> dict:
    """An answer to ``question``, right or wrong (essays are left unanswered: nothing to read)."""
    if question.kind in (QuestionKind.SINGLE, QuestionKind.TRUE_FALSE, QuestionKind.MULTIPLE):
        correct = [str(o.id) for o in options if o.is_correct]
        wrong = [str(o.id) for o in options if not o.is_correct][:1]
        return {"selected_option_ids": correct if right else wrong}
    if question.kind == QuestionKind.SHORT:
        accepted = list(question.accepted_answers or [])
        return {"text_answer": accepted[0] if right and accepted else "I am not sure"}
    if question.kind == QuestionKind.NUMERIC:
        answer = question.numeric_answer or Decimal(0)
        return {"numeric_answer": answer if right else answer + 1000}
    return {}


def _attempt(student: User, quiz: Quiz, right_answers: int, at) -> None:
    questions = list(db.session.scalars(select(QuizQuestion).where(QuizQuestion.quiz_id == quiz.id)
                                        .order_by(QuizQuestion.position)))
    options: dict = {q.id: [] for q in questions}
    for option in db.session.scalars(select(QuestionOption).where(QuestionOption.question_id.in_(options))
                                     .order_by(QuestionOption.position)):
        options[option.question_id].append(option)
    attempt = QuizAttempt(quiz_id=quiz.id, user_id=student.id, number=1, status=AttemptStatus.GRADED,
                          started_at=at - timedelta(minutes=12), submitted_at=at,
                          layout={"questions": [str(q.id) for q in questions],
                                  "options": {str(q.id): [str(o.id) for o in options[q.id]] for q in questions}})
    db.session.add(attempt)
    db.session.flush()
    score = Decimal(0)
    for index, question in enumerate(questions):
        values = _answer_values(question, options[question.id], index < right_answers)
        if not values:
            continue
        answer = Answer(attempt_id=attempt.id, question_id=question.id, saved_at=at, **values)
        result = grade_one(question, options[question.id], answer)
        answer.points_awarded, answer.is_correct = result.points, result.correct
        score += result.points
        db.session.add(answer)
    attempt.max_score = sum((q.points for q in questions), Decimal(0))
    attempt.score = min(score, attempt.max_score)
    attempt.percent = grading.percent_of(attempt.score, attempt.max_score)
    attempt.passed = attempt.percent >= quiz.passing_percent
    db.session.flush()


def seed_insights_and_paths(students: list[User], course_slugs: list[str]) -> int:
    """Attempts, insights and paths for the demo students in the demo courses; returns how many
    paths were created."""
    now = utcnow()
    created = 0
    courses = {c.id: c for c in db.session.scalars(select(Course).where(Course.slug.in_(course_slugs)))}
    for index, student in enumerate(students):
        enrolments = db.session.scalars(select(Enrollment).where(
            Enrollment.user_id == student.id, Enrollment.course_id.in_(courses),
            Enrollment.status == EnrollmentStatus.ACTIVE)).all()
        for enrolment in enrolments:
            done = set(db.session.scalars(select(Progress.lesson_id).where(
                Progress.user_id == student.id, Progress.course_id == enrolment.course_id,
                Progress.completed_at.is_not(None))))
            lessons_by_module: dict = {}
            for lesson_id, module_id in db.session.execute(
                    select(Lesson.id, Lesson.module_id).where(Lesson.course_id == enrolment.course_id)):
                lessons_by_module.setdefault(module_id, set()).add(lesson_id)
            attempted = set(db.session.scalars(select(QuizAttempt.quiz_id).where(QuizAttempt.user_id == student.id)))
            for quiz in db.session.scalars(select(Quiz).where(Quiz.course_id == enrolment.course_id,
                                                              Quiz.published.is_(True))):
                lessons = lessons_by_module.get(quiz.module_id)
                if quiz.id in attempted or not lessons or not lessons <= done:
                    continue
                _attempt(student, quiz, RIGHT_ANSWERS[index % len(RIGHT_ANSWERS)], now - timedelta(hours=2))
                gradebook.recompute(enrolment.course_id, student.id)
            refresh_insights(student.id, enrolment.course_id, now=now)
            created += ensure_path(student.id, enrolment.course_id, now=now)[1]
    return created
