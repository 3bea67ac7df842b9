"""Helpers shared by the insights and learning path tests (test_insights_*.py, test_paths_*.py):
a course whose modules are topics, each with lessons, a quiz of single-choice questions and an
assignment; quizzes taken through the real quiz services."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select

from portal.accounts.models import User
from portal.db import db
from portal.learning.assessment import services as quizzes
from portal.learning.assessment.models import QuestionKind, QuestionOption, Quiz, QuizAttempt, QuizQuestion
from portal.learning.education import services as education
from portal.learning.education.models import Course, Lesson, Module
from portal.learning.lms.models import Assignment
from tests.factories import create_user
from tests.learning.factories.assign import add_staff, make_assignment, make_course, make_quiz, release_grade
from tests.learning.factories.catalog import make_lesson, make_module

__all__ = ["Topic", "TopicCourse", "add_staff", "build_course", "create_user", "release_grade", "take_quiz"]


@dataclass
class Topic:
    module: Module
    lessons: list[Lesson]
    quiz: Quiz | None
    assignment: Assignment | None


@dataclass
class TopicCourse:
    course: Course
    teacher: User
    topics: list[Topic] = field(default_factory=list)

    def topic(self, title: str) -> Topic:
        return next(t for t in self.topics if t.module.title == title)


def build_course(titles=("Loops", "Functions", "Classes"), *, lessons: int = 2, questions: int = 3,
                 passing: int = 60, assignments: bool = True, quizzes_per_topic: bool = True,
                 max_attempts: int | None = None, **course_fields) -> TopicCourse:
    teacher = create_user("faculty")
    course = make_course(teacher, **course_fields)
    built = TopicCourse(course, teacher)
    for title in titles:
        module = make_module(course, title=title)
        module_lessons = [make_lesson(module, title=f"{title} lesson {n}") for n in range(1, lessons + 1)]
        quiz = None
        if quizzes_per_topic:
            quiz = make_quiz(course, module_id=module.id, title=f"{title} quiz",
                             passing_percent=Decimal(passing), max_attempts=max_attempts)
            for position in range(1, questions + 1):
                question = QuizQuestion(quiz_id=quiz.id, position=position, kind=QuestionKind.SINGLE,
                                        prompt=f"{title} question {position}?", points=Decimal(1))
                db.session.add(question)
                db.session.flush()
                db.session.add_all([QuestionOption(question_id=question.id, position=1, text="Right", is_correct=True),
                                    QuestionOption(question_id=question.id, position=2, text="Wrong",
                                                   is_correct=False)])
            db.session.flush()
        assignment = make_assignment(course, module_id=module.id, title=f"{title} project") if assignments else None
        built.topics.append(Topic(module, module_lessons, quiz, assignment))
    return built


def enrol(student: User, built: TopicCourse) -> None:
    education.enrol(student, built.course.id)


def take_quiz(student: User, quiz: Quiz, correct: int, *, answer: int | None = None) -> QuizAttempt:
    """Start, answer and submit an attempt through the quiz services: the first ``correct``
    questions right, the rest wrong; only the first ``answer`` questions answered (all when
    None)."""
    attempt = quizzes.start_attempt(student, quiz.id)
    questions = list(db.session.scalars(select(QuizQuestion).where(QuizQuestion.quiz_id == quiz.id)
                                        .order_by(QuizQuestion.position)))
    for index, question in enumerate(questions):
        if answer is not None and index >= answer:
            break
        options = {o.text: str(o.id) for o in db.session.scalars(
            select(QuestionOption).where(QuestionOption.question_id == question.id))}
        chosen = options["Right"] if index < correct else options["Wrong"]
        quizzes.save_answer(student, attempt.id, question.id, quizzes.AnswerInput(selected_option_ids=[chosen]))
    return quizzes.submit_attempt(student, attempt.id)


def complete_lessons(student: User, lessons: list[Lesson]) -> None:
    for lesson in lessons:
        education.complete_lesson(student, lesson.id)


def path_steps(path) -> list:
    """The path's steps in order, read fresh from the database."""
    from portal.learning.tutoring.models import PathStep

    return list(db.session.scalars(select(PathStep).where(PathStep.path_id == path.id).order_by(PathStep.position)
                                   .execution_options(populate_existing=True)))
