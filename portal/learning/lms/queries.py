"""Reads for the learning pages (faculty side)."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select, text, tuple_
from sqlalchemy.orm import defer

from portal.accounts.models import Role, User
from portal.db import db
from portal.learning.education.models import (
    Course,
    CourseStatus,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    Module,
)
from portal.learning.lms.models import CourseManagement, ManagementRole
from portal.pagination import Page, decode_cursor, encode_cursor

#: How many courses the dashboard card lists before "All my courses".
DASHBOARD_COURSES = 6


@dataclass
class ManagedCourse:
    """A row of "My courses": the course, the viewer's role on it (None for an administrator
    off its staff) and its size."""

    course: Course
    role: ManagementRole | None
    modules: int
    lessons: int
    students: int


@functools.cache
def _managed_stmt(admin: bool, by_status: bool, after: bool):
    """``managed_courses``' statement for one shape of the request (an administrator or not, a
    status filter or not, a cursor or not), built once: the values are bound parameters."""
    modules = (select(func.count()).select_from(Module).where(Module.course_id == Course.id)
               .correlate(Course).scalar_subquery())
    lessons = (select(func.count()).select_from(Lesson).where(Lesson.course_id == Course.id)
               .correlate(Course).scalar_subquery())
    students = (select(func.count()).select_from(Enrollment)
                .where(Enrollment.course_id == Course.id, Enrollment.status != EnrollmentStatus.LEFT)
                .correlate(Course).scalar_subquery())
    if admin:
        role = (select(CourseManagement.role)
                .where(CourseManagement.course_id == Course.id, CourseManagement.user_id == bindparam("user"))
                .correlate(Course).scalar_subquery())
        stmt = select(Course, role, modules, lessons, students).options(defer(Course.description))
    else:
        stmt = (select(Course, CourseManagement.role, modules, lessons, students)
                .options(defer(Course.description))
                .join(CourseManagement, CourseManagement.course_id == Course.id)
                .where(CourseManagement.user_id == bindparam("user")))
    if by_status:
        stmt = stmt.where(Course.status == bindparam("status"))
    if after:
        stmt = stmt.where(tuple_(Course.updated_at, Course.id) < tuple_(bindparam("after_at"), bindparam("after_id")))
    return stmt.order_by(Course.updated_at.desc(), Course.id.desc()).limit(bindparam("size"))


def managed_courses(user: User, *, status: str = "", cursor: str | None = None, size: int = 20) -> Page:
    """The courses ``user`` is on the staff of (every course for an administrator), most
    recently changed first, as ``ManagedCourse`` rows; keyset pagination, one query.

    The student counts read the course's enrolments (an index scan per course on the page): the
    one part of the page whose work grows with the data, with the size of its courses."""
    by_status = status in CourseStatus._value2member_map_
    position = decode_cursor(cursor)
    stmt = _managed_stmt(user.role == Role.ADMIN, by_status, position is not None)
    params = {"user": user.id, "size": size + 1}
    if by_status:
        params["status"] = CourseStatus(status)
    if position is not None:
        params["after_at"], params["after_id"] = position
    rows = db.session.execute(stmt, params).all()
    items = [ManagedCourse(*row) for row in rows[:size]]
    next_cursor = None
    if len(rows) > size:
        last = items[-1].course
        next_cursor = encode_cursor(last.updated_at, last.id)
    return Page(items, next_cursor)


def faculty_dashboard(user: User) -> dict:
    """What the faculty dashboard shows of learning: the courses they are on the staff of
    (``managed_courses``: (course, role) pairs, the most recently changed first, at most
    ``DASHBOARD_COURSES``), their sizes (``course_stats``: course id to ``ManagedCourse``) and
    whether there are more (``more_courses``)."""
    page = managed_courses(user, size=DASHBOARD_COURSES) if user.role == Role.FACULTY else Page([], None)
    return {
        "managed_courses": [(item.course, item.role) for item in page.items],
        "course_stats": {item.course.id: item for item in page.items},
        "more_courses": page.has_next,
    }


@dataclass
class OutlineModule:
    module: Module
    lessons: list[Lesson] = field(default_factory=list)


def outline(course_id: uuid.UUID) -> list[OutlineModule]:
    """The course's modules in order, each with its lessons in order (without their text): two
    queries whatever the size of the course."""
    modules = db.session.scalars(
        select(Module).where(Module.course_id == course_id).order_by(Module.position)
    ).all()
    result = {module.id: OutlineModule(module) for module in modules}
    lessons = db.session.scalars(
        select(Lesson).options(defer(Lesson.body)).where(Lesson.course_id == course_id)
        .order_by(Lesson.module_id, Lesson.position)
    )
    for lesson in lessons:
        if lesson.module_id in result:
            result[lesson.module_id].lessons.append(lesson)
    return list(result.values())


def categories(limit: int = 100) -> list[str]:
    """Categories already in use, for the course form's suggestions."""
    return list(db.session.scalars(
        select(Course.category).group_by(Course.category).order_by(func.count().desc(), Course.category)
        .limit(limit)
    ))


#: What waits for a grade, in one statement: assignments with submissions waiting (soonest due
#: first) and quizzes with attempts whose essays wait (by title), each with how many, told apart
#: by ``kind``. Each count reads only the waiting rows of one assignment or quiz, through the
#: ``(assignmentId, status)`` index and the quiz attempts' ``status`` index. ``{courses}`` is the
#: courses the user grades, or every course for an administrator.
_TO_GRADE_SQL = """
WITH graded AS ({courses})
(SELECT 'assignment' AS kind, a.id, a.title, c.title AS course_title, a."dueAt" AS due_at, w.waiting
   FROM assignments a
   JOIN graded g ON g.id = a."courseId"
   JOIN courses c ON c.id = a."courseId"
   CROSS JOIN LATERAL (SELECT count(*) AS waiting FROM submissions s
                        WHERE s."assignmentId" = a.id AND s.status = 'submitted') w
  WHERE w.waiting > 0
  ORDER BY a."dueAt" ASC NULLS LAST, a.title
  LIMIT :limit)
UNION ALL
(SELECT 'quiz', q.id, q.title, c.title, NULL, w.waiting
   FROM quizzes q
   JOIN graded g ON g.id = q."courseId"
   JOIN courses c ON c.id = q."courseId"
   CROSS JOIN LATERAL (SELECT count(*) AS waiting FROM quiz_attempts t
                        WHERE t."quizId" = q.id AND t.status = 'submitted') w
  WHERE w.waiting > 0
  ORDER BY q.title
  LIMIT :limit)
"""
_TO_GRADE = {
    True: text(_TO_GRADE_SQL.format(courses="SELECT id FROM courses")),
    False: text(_TO_GRADE_SQL.format(
        courses='SELECT "courseId" AS id FROM course_managements WHERE "userId" = :user AND role IN :roles'))
        .bindparams(bindparam("roles", expanding=True)),
}


def to_grade(user: User, limit: int = 50) -> dict:
    """What waits for a grade in the courses ``user`` grades (every course for an admin):
    assignments with ungraded submissions, and quizzes with essays to grade. One statement
    (``_TO_GRADE_SQL``)."""
    from portal.learning.lms import access

    rows, quiz_rows = [], []
    result = db.session.execute(_TO_GRADE[user.role == Role.ADMIN],
                                {"user": user.id, "limit": limit, "roles": [role.value for role in access.CAN_GRADE]})
    for row in result:
        (rows if row.kind == "assignment" else quiz_rows).append(row)
    return {"rows": rows, "quiz_rows": quiz_rows}
