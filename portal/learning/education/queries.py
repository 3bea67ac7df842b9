"""Reads for the learning pages (students' side): the catalog, a course's outline with the
reader's progress, and the learning part of the student dashboard.

Each page reads a fixed number of statements whatever the size of the course or the catalog:
the catalog is one ranked query (with its total as a window count), and a course's outline is
four (the course with the reader's enrolment and staff role, its modules with their lessons,
the reader's progress rows, and the published quizzes with whether the reader passed them).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import Integer, and_, case, cast, exists, func, literal, null, or_, select
from sqlalchemy.orm import joinedload, load_only

from portal.accounts.models import Role, User
from portal.db import db
from portal.errors import NotFound
from portal.learning.assessment.models import Gradebook, Quiz, QuizAttempt
from portal.learning.education.models import (
    Achievement,
    Course,
    CourseLevel,
    CourseStatus,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    Module,
    Progress,
)
from portal.learning.lms.models import Assignment, Certificate, CourseManagement, Grade, ManagementRole

#: Courses per catalog page.
CATALOG_PAGE_SIZE = 12
#: Search text is cut to this many characters.
MAX_QUERY = 100
#: Queries shorter than this match course titles by substring instead of full-text search.
SHORT_QUERY = 3
#: The deepest page number the catalog serves (offset pagination over a ranked result).
MAX_PAGE = 500


def course_path(course: Course) -> str:
    """The course page's address, for notification links (services have no request to build
    URLs from; the blueprint's rule is ``/learning/courses/<slug>``)."""
    return f"/learning/courses/{course.slug}"


def lesson_path(course: Course, lesson_id: uuid.UUID) -> str:
    return f"/learning/courses/{course.slug}/lessons/{lesson_id}"


# --------------------------------------------------------------------------- catalog


@dataclass
class CatalogFilters:
    q: str = ""
    category: str = ""
    level: str = ""
    instructor: str = ""

    @classmethod
    def clean(cls, q: str | None = None, category: str | None = None, level: str | None = None,
              instructor: str | None = None) -> CatalogFilters:
        """Filters from untrusted input: unknown values are dropped, not errors."""
        level = level if level in {lv.value for lv in CourseLevel} else ""
        try:
            instructor = str(uuid.UUID(instructor)) if instructor else ""
        except ValueError:
            instructor = ""
        return cls(q=" ".join((q or "").split())[:MAX_QUERY], category=(category or "").strip()[:60],
                   level=level, instructor=instructor)

    def as_args(self) -> dict:
        """The non-empty filters, for links to other pages of the same result."""
        return {key: value for key, value in vars(self).items() if value}

    @property
    def active(self) -> bool:
        return bool(self.as_args())


@dataclass
class CatalogEntry:
    course: Course
    instructor_name: str | None
    #: The reader's enrolment in the course (students), or None.
    enrollment: Enrollment | None = None


@dataclass
class CatalogPage:
    entries: list[CatalogEntry]
    total: int
    page: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def first_index(self) -> int:
        return (self.page - 1) * self.size + 1 if self.entries else 0

    @property
    def last_index(self) -> int:
        return (self.page - 1) * self.size + len(self.entries)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def catalog_page(user: User, filters: CatalogFilters, page: int = 1,
                 size: int = CATALOG_PAGE_SIZE) -> CatalogPage:
    """One page of published courses matching ``filters``, best match first when searching,
    newest first otherwise. Two statements: the page (with the total as a window count) and
    the reader's enrolments among its courses."""
    page = min(max(page, 1), MAX_PAGE)
    total = func.count().over().label("total")
    stmt = (
        select(Course, User.full_name, total)
        .options(load_only(Course.slug, Course.title, Course.summary, Course.category, Course.level,
                           Course.estimated_hours, Course.published_at, Course.instructor_id, Course.status))
        .outerjoin(User, User.id == Course.instructor_id)
        .where(Course.status == CourseStatus.PUBLISHED)
    )
    if filters.category:
        stmt = stmt.where(Course.category == filters.category)
    if filters.level:
        stmt = stmt.where(Course.level == CourseLevel(filters.level))
    if filters.instructor:
        stmt = stmt.where(Course.instructor_id == uuid.UUID(filters.instructor))
    if filters.q:
        title_match = Course.title.ilike(f"%{_escape_like(filters.q)}%", escape="\\")
        if len(filters.q) < SHORT_QUERY:
            stmt = stmt.where(title_match).order_by(Course.title, Course.id)
        else:
            query = func.websearch_to_tsquery("english", filters.q)
            # A title that contains the words as typed also matches, so that live search finds
            # "Python" while the reader is still typing "pyth".
            stmt = stmt.where(or_(Course.search.op("@@")(query), title_match)).order_by(
                (func.ts_rank(Course.search, query) + cast(title_match, Integer) * literal(0.1)).desc(),
                Course.title, Course.id,
            )
    else:
        stmt = stmt.order_by(Course.published_at.desc().nulls_last(), Course.title, Course.id)
    rows = db.session.execute(stmt.limit(size).offset((page - 1) * size)).all()
    entries = [CatalogEntry(course, name) for course, name, _ in rows]
    count = rows[0].total if rows else 0
    if not rows and page > 1:
        # Past the end: say how many there are so the page can link back.
        count = db.session.scalar(stmt.with_only_columns(func.count()).order_by(None))
    if entries and user.role == Role.STUDENT:
        by_course = {entry.course.id: entry for entry in entries}
        for enrollment in db.session.scalars(
            select(Enrollment).where(Enrollment.user_id == user.id, Enrollment.course_id.in_(by_course))
        ):
            by_course[enrollment.course_id].enrollment = enrollment
    return CatalogPage(entries, count, page, size)


def catalog_facets() -> dict:
    """The choices of the catalog's filters: categories and instructors of published courses."""
    published = Course.status == CourseStatus.PUBLISHED
    categories = list(db.session.scalars(
        select(Course.category).where(published).group_by(Course.category).order_by(Course.category)
    ))
    instructors = db.session.execute(
        select(User.id, User.full_name)
        .where(exists().where(Course.instructor_id == User.id, published))
        .order_by(User.full_name)
    ).all()
    return {"categories": categories, "levels": list(CourseLevel), "instructors": instructors}


# --------------------------------------------------------------------------- a course's outline


@dataclass
class LessonItem:
    id: uuid.UUID
    title: str
    position: int
    estimated_minutes: int | None
    module_id: uuid.UUID
    viewed: bool = False
    completed: bool = False


@dataclass
class QuizItem:
    id: uuid.UUID
    title: str
    passed: bool


@dataclass
class ModuleItem:
    id: uuid.UUID
    position: int
    title: str
    summary: str
    requires_previous: bool
    lessons: list[LessonItem] = field(default_factory=list)
    quizzes: list[QuizItem] = field(default_factory=list)
    #: Set by ``Outline``: the module is closed to the reader until the previous one is passed.
    locked: bool = False

    @property
    def passed(self) -> bool:
        """All its lessons completed and all its published quizzes passed."""
        return all(lesson.completed for lesson in self.lessons) and all(quiz.passed for quiz in self.quizzes)


@dataclass
class Outline:
    """A course as one reader sees it: modules and lessons in order with the reader's progress,
    which modules are locked, their enrolment and whether they are on the course's staff."""

    course: Course
    instructor_name: str | None
    enrollment: Enrollment | None
    staff_role: ManagementRole | None
    is_admin: bool
    modules: list[ModuleItem]
    #: Published quizzes not attached to a module (they count for completion only).
    course_quizzes: list[QuizItem] = field(default_factory=list)
    #: The Markdown of the lesson asked for with ``load_outline(body_of=...)``.
    body: str | None = None

    def __post_init__(self):
        self.refresh_locks()

    def refresh_locks(self) -> None:
        """Work out which modules are locked (again, after a lesson was completed)."""
        previous = None
        for module in self.modules:
            module.locked = bool(module.requires_previous and previous is not None and not previous.passed)
            previous = module

    @property
    def is_staff(self) -> bool:
        """May preview everything: an admin, or on the course's staff."""
        return self.is_admin or self.staff_role is not None

    @property
    def is_enrolled(self) -> bool:
        return self.enrollment is not None and self.enrollment.status != EnrollmentStatus.LEFT

    @property
    def lessons(self) -> list[LessonItem]:
        return [lesson for module in self.modules for lesson in module.lessons]

    @property
    def total_lessons(self) -> int:
        return sum(len(module.lessons) for module in self.modules)

    @property
    def completed_lessons(self) -> int:
        return sum(1 for lesson in self.lessons if lesson.completed)

    def find(self, lesson_id: uuid.UUID) -> tuple[LessonItem, ModuleItem] | None:
        for module in self.modules:
            for lesson in module.lessons:
                if lesson.id == lesson_id:
                    return lesson, module
        return None

    def previous_module(self, module: ModuleItem) -> ModuleItem | None:
        index = self.modules.index(module)
        return self.modules[index - 1] if index > 0 else None

    def neighbours(self, lesson_id: uuid.UUID) -> tuple[LessonItem | None, LessonItem | None]:
        lessons = self.lessons
        for index, lesson in enumerate(lessons):
            if lesson.id == lesson_id:
                return (lessons[index - 1] if index > 0 else None,
                        lessons[index + 1] if index + 1 < len(lessons) else None)
        return None, None

    def module_of(self, lesson: LessonItem) -> ModuleItem:
        return next(module for module in self.modules if module.id == lesson.module_id)

    def continue_lesson(self) -> LessonItem | None:
        """Where "continue" goes: the lesson last opened, else the first one not completed in an
        open module, else the first lesson."""
        lessons = self.lessons
        if self.enrollment is not None and self.enrollment.last_lesson_id is not None:
            found = self.find(self.enrollment.last_lesson_id)
            if found is not None and not found[1].locked:
                return found[0]
        for module in self.modules:
            if module.locked:
                continue
            for lesson in module.lessons:
                if not lesson.completed:
                    return lesson
        return lessons[0] if lessons else None


def _course_row(user: User, *where):
    """The course, its instructor's name, the reader's enrolment and staff role: one statement."""
    return db.session.execute(
        select(Course, User.full_name, Enrollment, CourseManagement.role)
        .outerjoin(User, User.id == Course.instructor_id)
        .outerjoin(Enrollment, and_(Enrollment.course_id == Course.id, Enrollment.user_id == user.id))
        .outerjoin(CourseManagement, and_(CourseManagement.course_id == Course.id,
                                          CourseManagement.user_id == user.id))
        .where(*where)
    ).first()


def load_outline(user: User, *, slug: str | None = None, course_id: uuid.UUID | None = None,
                 body_of: uuid.UUID | None = None) -> Outline:
    """The outline of a course by slug or id, as ``user`` sees it; with ``body_of``, the text
    of that one lesson comes along in the same statement (``Outline.body``).

    Raises NotFound when there is no such course or it is not published and the reader is not
    on its staff (nor an admin): a draft is invisible, not forbidden."""
    if slug is not None:
        row = _course_row(user, Course.slug == slug[:80])
    else:
        row = _course_row(user, Course.id == course_id)
    if row is None:
        raise NotFound("There is no such course in the catalog.")
    course, instructor_name, enrollment, staff_role = row
    is_admin = user.role == Role.ADMIN
    if user.role != Role.FACULTY:
        staff_role = None  # a management row only means something for faculty
    if course.status != CourseStatus.PUBLISHED and not (is_admin or staff_role is not None):
        raise NotFound("There is no such course in the catalog.")

    modules: list[ModuleItem] = []
    by_id: dict[uuid.UUID, ModuleItem] = {}
    lessons: dict[uuid.UUID, LessonItem] = {}
    rows = db.session.execute(
        select(Module.id, Module.position, Module.title, Module.summary, Module.requires_previous,
               Lesson.id.label("lesson_id"), Lesson.title.label("lesson_title"),
               Lesson.position.label("lesson_position"), Lesson.estimated_minutes,
               (case((Lesson.id == body_of, Lesson.body)) if body_of else null()).label("body"))
        .outerjoin(Lesson, Lesson.module_id == Module.id)
        .where(Module.course_id == course.id)
        .order_by(Module.position, Lesson.position)
    ).all()
    body = None
    for row in rows:
        if row.body is not None:
            body = row.body
        module = by_id.get(row.id)
        if module is None:
            module = by_id[row.id] = ModuleItem(row.id, row.position, row.title, row.summary, row.requires_previous)
            modules.append(module)
        if row.lesson_id is not None:
            lesson = LessonItem(row.lesson_id, row.lesson_title, row.lesson_position, row.estimated_minutes, row.id)
            module.lessons.append(lesson)
            lessons[lesson.id] = lesson

    if enrollment is not None and lessons:
        for lesson_id, completed_at in db.session.execute(
            select(Progress.lesson_id, Progress.completed_at)
            .where(Progress.user_id == user.id, Progress.course_id == course.id)
        ):
            lesson = lessons.get(lesson_id)
            if lesson is not None:
                lesson.viewed = True
                lesson.completed = completed_at is not None

    passed = exists().where(QuizAttempt.quiz_id == Quiz.id, QuizAttempt.user_id == user.id,
                            QuizAttempt.passed.is_(True))
    course_quizzes = []
    for quiz_id, module_id, title, is_passed in db.session.execute(
        select(Quiz.id, Quiz.module_id, Quiz.title, passed)
        .where(Quiz.course_id == course.id, Quiz.published.is_(True))
        .order_by(Quiz.created_at, Quiz.id)
    ):
        item = QuizItem(quiz_id, title, bool(is_passed))
        (by_id[module_id].quizzes if module_id in by_id else course_quizzes).append(item)

    return Outline(course, instructor_name, enrollment, staff_role, is_admin, modules, course_quizzes, body)


# --------------------------------------------------------------------------- dashboard


def student_dashboard(user: User) -> dict:
    """What the student dashboard shows of learning: the courses a student is in (latest
    activity first) with their progress and where to continue, and their latest achievements.
    Two statements."""
    enrollments = db.session.scalars(
        select(Enrollment)
        .options(joinedload(Enrollment.course).load_only(Course.slug, Course.title, Course.status))
        .where(Enrollment.user_id == user.id, Enrollment.status != EnrollmentStatus.LEFT)
        .order_by(Enrollment.last_activity_at.desc().nulls_last(), Enrollment.created_at.desc())
        .limit(6)
    ).all()
    achievements = db.session.scalars(
        select(Achievement).where(Achievement.user_id == user.id)
        .order_by(Achievement.earned_at.desc(), Achievement.id).limit(5)
    ).all()
    return {"enrollments": enrollments, "achievements": achievements, "due_next": due_next(user),
            "recent_grades": recent_grades(user)}


@dataclass(frozen=True)
class DueItem:
    kind: str  #: ``assignment`` or ``quiz``
    id: uuid.UUID
    title: str
    due_at: object
    course_title: str


def due_next(user: User, limit: int = 5) -> list[DueItem]:
    """What is due soonest in the student's active courses: published assignments not yet
    submitted and published quizzes that close in the future and are not yet passed. One
    statement."""
    from portal.db.base import utcnow
    from portal.learning.lms.models import Submission

    now = utcnow()
    active = select(Enrollment.course_id).where(Enrollment.user_id == user.id,
                                                Enrollment.status == EnrollmentStatus.ACTIVE)
    assignments = (
        select(literal("assignment").label("kind"), Assignment.id, Assignment.title, Assignment.due_at.label("due"),
               Course.title.label("course_title"))
        .join(Course, Course.id == Assignment.course_id)
        .where(Assignment.course_id.in_(active), Assignment.published, Assignment.due_at > now,
               ~exists().where(Submission.assignment_id == Assignment.id, Submission.user_id == user.id))
    )
    quizzes = (
        select(literal("quiz").label("kind"), Quiz.id, Quiz.title, Quiz.closes_at.label("due"),
               Course.title.label("course_title"))
        .join(Course, Course.id == Quiz.course_id)
        .where(Quiz.course_id.in_(active), Quiz.published, Quiz.closes_at > now,
               ~exists().where(QuizAttempt.quiz_id == Quiz.id, QuizAttempt.user_id == user.id,
                               QuizAttempt.passed.is_(True)))
    )
    both = assignments.union_all(quizzes).subquery()
    rows = db.session.execute(select(both).order_by(both.c.due, both.c.id).limit(limit)).all()
    return [DueItem(row.kind, row.id, row.title, row.due, row.course_title) for row in rows]


def recent_grades(user: User, limit: int = 3) -> list:
    """The student's latest released assignment grades with their feedback. One statement."""
    return db.session.execute(
        select(Grade.score, Grade.feedback, Grade.released_at, Assignment.id.label("assignment_id"),
               Assignment.title, Assignment.points)
        .join(Assignment, Assignment.id == Grade.assignment_id)
        .where(Grade.user_id == user.id, Grade.released_at.is_not(None))
        .order_by(Grade.released_at.desc(), Grade.id)
        .limit(limit)
    ).all()


# --------------------------------------------------------------------------- a student's record

#: Rows per page of "My grades" and "My achievements".
RECORD_PAGE_SIZE = 20


@dataclass
class RecordPage:
    """A page of a student's own rows, newest first (offset pagination; one statement reads
    one row more than the page to know whether another page follows)."""

    items: list
    page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def _record_page(stmt, page: int, size: int) -> RecordPage:
    page = min(max(page, 1), MAX_PAGE)
    rows = db.session.execute(stmt.limit(size + 1).offset((page - 1) * size)).all()
    return RecordPage(rows[:size], page, len(rows) > size)


@dataclass
class GradesView:
    #: The courses whose grades are shown (one, when filtered), with the student's totals.
    totals: list
    grades: RecordPage
    course: Course | None = None


def my_grades(user: User, course_id: uuid.UUID | None = None, page: int = 1,
              size: int = RECORD_PAGE_SIZE) -> GradesView:
    """The student's released assignment grades (newest release first) and their course totals
    from the gradebook, optionally for one course. Only released grades count: a grade the
    course staff have not released yet stays invisible here. Three statements at most."""
    course = None
    if course_id is not None:
        course = db.session.get(Course, course_id)
        if course is None:
            raise NotFound("There is no such course in the catalog.")
    grades = (
        select(Grade.id, Grade.score, Grade.released_at, Assignment.id.label("assignment_id"),
               Assignment.title, Assignment.points, Course.title.label("course_title"),
               Course.slug.label("course_slug"))
        .join(Assignment, Assignment.id == Grade.assignment_id)
        .join(Course, Course.id == Assignment.course_id)
        .where(Grade.user_id == user.id, Grade.released_at.is_not(None))
        .order_by(Grade.released_at.desc(), Grade.id)
    )
    totals = (
        select(Gradebook.percent, Gradebook.override_percent, Gradebook.letter, Gradebook.status,
               Course.id.label("course_id"), Course.title.label("course_title"), Course.slug.label("course_slug"))
        .join(Course, Course.id == Gradebook.course_id)
        .where(Gradebook.user_id == user.id)
        .order_by(Course.title, Course.id)
        .limit(50)
    )
    if course is not None:
        grades = grades.where(Assignment.course_id == course.id)
        totals = totals.where(Gradebook.course_id == course.id)
    return GradesView(list(db.session.execute(totals).all()), _record_page(grades, page, size), course)


def my_achievements(user: User, page: int = 1, size: int = RECORD_PAGE_SIZE) -> RecordPage:
    """The student's achievements, newest first, with the course each was earned in."""
    stmt = (
        select(Achievement, Course.title.label("course_title"), Course.slug.label("course_slug"))
        .outerjoin(Course, Course.id == Achievement.course_id)
        .where(Achievement.user_id == user.id)
        .order_by(Achievement.earned_at.desc(), Achievement.id)
    )
    return _record_page(stmt, page, size)


def certificate_code(user: User, course_id: uuid.UUID) -> str | None:
    """The code of the student's certificate of the course, if one was issued."""
    return db.session.scalar(select(Certificate.code).where(Certificate.user_id == user.id,
                                                            Certificate.course_id == course_id))
