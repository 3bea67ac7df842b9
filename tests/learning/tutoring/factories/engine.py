"""Helpers shared by the tutor engine's tests (test_engine_*.py)."""

from __future__ import annotations

from sqlalchemy import select

from portal.db import db
from portal.learning import demo_content
from portal.learning.demo import seed_learning
from portal.learning.education.models import Course, CourseStatus, Lesson, Module
from portal.learning.tutoring import passages
from portal.learning.tutoring.models import LessonPassage
from tests.factories import create_user
from tests.learning.factories import catalog as factories_catalog


def seed_demo_courses() -> dict[str, Course]:
    """The demo courses with their lessons, quizzes and passages, in the test's transaction;
    by slug."""
    seed_learning(create_user(role="faculty"), [])
    slugs = [spec.slug for spec in demo_content.COURSES]
    return {course.slug: course for course in db.session.scalars(select(Course).where(Course.slug.in_(slugs)))}


def course_with_lessons(lessons: dict[str, str], *, title: str | None = None, language: str = "english",
                        status: CourseStatus = CourseStatus.PUBLISHED, module_title: str = "A module",
                        instructor=None) -> tuple[Course, Module, dict[str, Lesson]]:
    """A course with one module holding ``lessons`` (title -> markdown body), indexed."""
    course = factories_catalog.make_course(title=title, status=status, language=language, instructor=instructor)
    module = factories_catalog.make_module(course, title=module_title)
    made = {name: factories_catalog.make_lesson(module, title=name, body=body) for name, body in lessons.items()}
    passages.reindex_course(course)
    return course, module, made


def passages_of(lesson_id) -> list[LessonPassage]:
    return list(db.session.scalars(select(LessonPassage).where(LessonPassage.lesson_id == lesson_id)
                                   .order_by(LessonPassage.position)))
