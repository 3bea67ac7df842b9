"""Rows for the tutor chat tests (test_chat_*.py): courses whose lessons are indexed for the
tutor, enrolled students, open quiz attempts, and a fixed clock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from portal.accounts.models import User
from portal.db import db
from portal.learning.assessment.models import AttemptStatus, Quiz, QuizAttempt
from portal.learning.education.models import Course, CourseStatus, EnrollmentStatus, Lesson, Module
from portal.learning.tutoring import passages
from tests.factories import create_user
from tests.learning.factories.assign import enroll
from tests.learning.factories.catalog import make_course, make_lesson, make_module

PLANTS = {
    "How Plants Make Food": [
        "# How Plants Make Food\n\nPlants make their own food through photosynthesis.\n\n"
        "## Chlorophyll and sunlight\n\nChlorophyll is the green pigment in the leaves. Chlorophyll absorbs "
        "sunlight and gives the leaf its green colour. Without sunlight, photosynthesis stops.\n\n"
        "## Carbon dioxide and water\n\nLeaves take in carbon dioxide through small pores called stomata, and "
        "roots draw up water. Photosynthesis turns carbon dioxide and water into glucose and oxygen.",
    ],
    "Roots and Stems": [
        "# Roots and Stems\n\n## What roots do\n\nRoots anchor the plant in the soil and absorb water and "
        "minerals. Root hairs give the roots a large surface.\n\n"
        "## How stems carry water\n\nThe xylem in the stem carries water from the roots up to the leaves; the "
        "phloem carries sugars down from the leaves.",
    ],
}
VOLCANOES = {
    "Inside a Volcano": [
        "# Inside a Volcano\n\n## The magma chamber\n\nBeneath a volcano lies a magma chamber full of molten "
        "rock. When pressure in the magma chamber rises, the volcano erupts and lava flows out.\n\n"
        "## Basalt\n\nBasalt is a dark rock formed when lava cools quickly.",
    ],
}


@dataclass
class TutorCourse:
    course: Course
    modules: dict[str, Module] = field(default_factory=dict)
    lessons: dict[str, Lesson] = field(default_factory=dict)


def tutor_course(content: dict[str, list[str]] | None = None, *, title: str | None = None,
                 module_title: str = "Plant biology") -> TutorCourse:
    """A published course with one module whose lessons (title -> [markdown body]) are indexed
    for the tutor."""
    content = PLANTS if content is None else content
    course = make_course(title=title or f"Botany {uuid.uuid4().hex[:6]}")
    made = TutorCourse(course)
    module = make_module(course, title=module_title)
    made.modules[module_title] = module
    for lesson_title, (body,) in content.items():
        lesson = make_lesson(module, title=lesson_title, body=body)
        passages.index_lesson(lesson)
        made.lessons[lesson_title] = lesson
    db.session.flush()
    return made


def student_in(course: Course, status: EnrollmentStatus = EnrollmentStatus.ACTIVE, **fields) -> User:
    student = create_user("student", **fields)
    enroll(course, student, status)
    return student


def open_attempt(course: Course, student: User, *, deadline: datetime | None = None, title: str = "Plants check",
                 status: AttemptStatus = AttemptStatus.IN_PROGRESS, published: bool = True) -> QuizAttempt:
    quiz = Quiz(course_id=course.id, title=title, description="", published=published)
    db.session.add(quiz)
    db.session.flush()
    attempt = QuizAttempt(quiz_id=quiz.id, user_id=student.id, number=1, status=status,
                          started_at=datetime.now(UTC) - timedelta(minutes=5), deadline_at=deadline,
                          submitted_at=None if status == AttemptStatus.IN_PROGRESS else datetime.now(UTC))
    db.session.add(attempt)
    db.session.flush()
    return attempt


def unpublish(course: Course) -> None:
    course.status = CourseStatus.DRAFT
    db.session.flush()


class Clock:
    """The services' clock (``portal.db.base.utcnow``), fixed; ``advance(minutes=...)`` moves it."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def record_question(student: User, course: Course, question: str, *, topic: Module | None = None,
                    kind: str = "answer", helpful: bool | None = None, at: datetime | None = None,
                    session=None):
    """A question and its reply straight into the tables (no engine), for the history and the
    report: ``kind`` answer, hint or not_found; ``at`` when it was asked."""
    from portal.learning.tutoring.models import (
        Message,
        MessageRole,
        ReplyKind,
        ReplySource,
        TutoringSession,
        TutorQuestion,
    )
    from portal.learning.tutoring.services import normalise

    at = at or datetime.now(UTC)
    if session is None:
        session = TutoringSession(user_id=student.id, course_id=course.id, title=question[:80], started_at=at,
                                  last_activity_at=at, message_count=0)
        db.session.add(session)
        db.session.flush()
    asked = Message(session_id=session.id, user_id=student.id, role=MessageRole.STUDENT, body=question,
                    created_at=at, updated_at=at)
    reply = Message(session_id=session.id, user_id=student.id, role=MessageRole.TUTOR, body="A reply.",
                    kind=ReplyKind(kind), source=ReplySource.RETRIEVAL, created_at=at + timedelta(microseconds=1),
                    updated_at=at)
    db.session.add_all([asked, reply])
    db.session.flush()
    row = TutorQuestion(user_id=student.id, course_id=course.id, session_id=session.id,
                        question_message_id=asked.id, reply_message_id=reply.id, question=question,
                        normalized=normalise(question), topic_module_id=topic.id if topic else None,
                        reply_kind=ReplyKind(kind), answered=kind != "not_found", helpful=helpful,
                        marked_at=at if helpful is not None else None, created_at=at, updated_at=at)
    db.session.add(row)
    session.message_count += 2
    session.last_activity_at = reply.created_at
    db.session.flush()
    return row
