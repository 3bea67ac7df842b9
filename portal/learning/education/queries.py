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
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, bindparam, select, text

from portal.accounts.models import Role, User
from portal.db import db
from portal.errors import NotFound
from portal.learning.assessment.models import Gradebook
from portal.learning.education.models import (
    Achievement,
    AchievementKind,
    Course,
    CourseLevel,
    CourseStatus,
    Enrollment,
    EnrollmentStatus,
)
from portal.learning.lms.models import Assignment, Certificate, CourseManagement, Grade, ManagementRole
from portal.platform.cache import services as cache

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


@dataclass(frozen=True, slots=True)
class CatalogEnrollment:
    """The reader's enrolment in a course of the catalog: what its card shows."""

    status: EnrollmentStatus
    progress_percent: int


@dataclass
class CatalogEntry:
    #: The course's columns the card shows (id, slug, title, summary, category, level,
    #: estimated_hours): a row, not a loaded ``Course``.
    course: object
    instructor_name: str | None
    #: The reader's enrolment in the course (students), or None.
    enrollment: CatalogEnrollment | None = None


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


#: The catalog's statement, by shape: which filters are set, the kind of search (none, a short
#: title match, full text) and whether the reader's enrolments are joined. ``{where}`` and the
#: sort keys are filled in by ``_catalog_statement``; the values are bound parameters.
_CATALOG_SQL = """
SELECT c.id, c.slug, c.title, c.summary, c.category, c.level, c."estimatedHours" AS estimated_hours,
       c.price, c."priceCurrency" AS price_currency, u."fullName" AS instructor_name, ranked.total{enrolment_columns}
  FROM (SELECT id, count(*) OVER () AS total, {keys}
          FROM courses
         WHERE {where}
         ORDER BY {order}
         LIMIT :size OFFSET :offset) ranked
  JOIN courses c ON c.id = ranked.id
  LEFT JOIN users u ON u.id = c."instructorId"{enrolment_join}
 ORDER BY {outer_order}
"""
_CATALOG_COUNT_SQL = "SELECT count(*) FROM courses WHERE {where}"
#: ``(filters set, search kind, student)`` -> (page statement, count statement): built once each.
_catalog_statements: dict[tuple, tuple] = {}
#: A title that contains the words as typed also matches a full-text search, so that live
#: search finds "Python" while the reader is still typing "pyth".
_TITLE_MATCH = "title ILIKE :pattern ESCAPE '\\'"
_TEXT_QUERY = "websearch_to_tsquery('english', :q)"


def _catalog_statement(category: bool, level: bool, instructor: bool, search: str, student: bool) -> tuple:
    shape = (category, level, instructor, search, student)
    if shape not in _catalog_statements:
        where = ["status = 'published'"]
        where += ["category = :category"] if category else []
        where += ["level = :level"] if level else []
        where += ['"instructorId" = :instructor'] if instructor else []
        if search == "title":
            where.append(_TITLE_MATCH)
            keys = [("title", False), ("id", False)]
        elif search == "text":
            where.append(f"(search @@ {_TEXT_QUERY} OR {_TITLE_MATCH})")
            keys = [(f"ts_rank(search, {_TEXT_QUERY}) + ({_TITLE_MATCH})::int * 0.1", True),
                    ("title", False), ("id", False)]
        else:
            keys = [('"publishedAt"', True), ("title", False), ("id", False)]

        def order(names) -> str:
            return ", ".join(f"{name} DESC NULLS LAST" if descending else name
                             for name, (_, descending) in zip(names, keys, strict=True))

        conditions = " AND ".join(where)
        page_sql = _CATALOG_SQL.format(
            keys=", ".join(f"{key} AS k{i}" for i, (key, _) in enumerate(keys)), where=conditions,
            order=order([key for key, _ in keys]), outer_order=order([f"ranked.k{i}" for i in range(len(keys))]),
            enrolment_columns=(', e.status AS enrollment_status, e."progressPercent" AS progress_percent'
                               if student else ""),
            enrolment_join=('\n  LEFT JOIN enrollments e ON e."courseId" = c.id AND e."userId" = :user'
                            if student else ""))
        typed = {"level": Course.__table__.c.level.type}
        if student:
            typed["enrollment_status"] = Enrollment.__table__.c.status.type
        _catalog_statements[shape] = (text(page_sql).columns(**typed),
                                      text(_CATALOG_COUNT_SQL.format(where=conditions)))
    return _catalog_statements[shape]


def catalog_page(user: User, filters: CatalogFilters, page: int = 1,
                 size: int = CATALOG_PAGE_SIZE) -> CatalogPage:
    """One page of published courses matching ``filters``, best match first when searching,
    newest first otherwise. One statement: the matching courses are ranked and counted (a
    window count) on their ids and sort keys only, then the page's courses are joined to their
    columns, their instructor's name and, for a student, their enrolment. Only past the end
    of the results does a second statement count them. The SQL is written out (one statement
    per shape of the filters, made once) rather than built with the ORM on every request: the
    catalog is the most visited page, and building the statement cost more than running it."""
    page = min(max(page, 1), MAX_PAGE)
    search = "" if not filters.q else "title" if len(filters.q) < SHORT_QUERY else "text"
    student = user.role == Role.STUDENT
    page_stmt, count_stmt = _catalog_statement(bool(filters.category), bool(filters.level),
                                               bool(filters.instructor), search, student)
    params = {"size": size, "offset": (page - 1) * size, "category": filters.category, "level": filters.level,
              "instructor": uuid.UUID(filters.instructor) if filters.instructor else None, "q": filters.q,
              "pattern": f"%{_escape_like(filters.q)}%", "user": user.id}
    rows = db.session.execute(page_stmt, params).all()
    entries = [CatalogEntry(row, row.instructor_name,
                            CatalogEnrollment(row.enrollment_status, row.progress_percent)
                            if student and row.enrollment_status is not None else None)
               for row in rows]
    count = rows[0].total if rows else 0
    if not rows and page > 1:
        # Past the end: say how many there are so the page can link back.
        count = db.session.scalar(count_stmt, params)
    return CatalogPage(entries, count, page, size)


#: The choices of the catalog's filters and how many published courses each holds, in one
#: statement: the courses per category and per level and the total (one pass over the published
#: courses, grouping sets), and each distinct instructor found by one step down
#: ``ix_courses_instructorId`` from the last (a "loose index scan" written as a recursive query),
#: with their name by key. Kept in the shared cache (``catalog_facets``).
_FACETS_SQL = text("""
WITH RECURSIVE instructors(id) AS (
    (SELECT "instructorId" FROM courses WHERE status = 'published' AND "instructorId" IS NOT NULL
      ORDER BY "instructorId" LIMIT 1)
  UNION ALL
    SELECT (SELECT c."instructorId" FROM courses c
             WHERE c.status = 'published' AND c."instructorId" > instructors.id
             ORDER BY c."instructorId" LIMIT 1)
      FROM instructors WHERE instructors.id IS NOT NULL
)
SELECT kind, id, name, n FROM (
    SELECT CASE GROUPING(category, level) WHEN 1 THEN 'category' WHEN 2 THEN 'level' ELSE 'total' END AS kind,
           NULL::uuid AS id, coalesce(category, level::text) AS name, count(*) AS n
      FROM courses WHERE status = 'published'
     GROUP BY GROUPING SETS ((category), (level), ())
    UNION ALL
    SELECT 'instructor', i.id, (SELECT u."fullName" FROM users u WHERE u.id = i.id), NULL
      FROM instructors i WHERE i.id IS NOT NULL) choices
 WHERE name IS NOT NULL OR kind = 'total'
 ORDER BY kind, name, id
""")

#: The facets are the same for every reader (published courses only), so they are one shared
#: entry. Publishing, unpublishing, archiving a course, creating one or changing its category
#: or level drops it when that change commits (``authoring``); an instructor's new name shows
#: within ``CATALOG_FACETS_SECONDS``.
CATALOG_FACETS_KEY = cache.shared_key("catalog-facets")
CATALOG_FACETS_SECONDS = 300


@dataclass(frozen=True, slots=True)
class Instructor:
    id: str
    full_name: str


def _count_facets() -> dict:
    """What ``_FACETS_SQL`` finds, as lists of pairs (a JSON object would not keep the order)."""
    facets: dict = {"category": [], "level": [], "instructor": [], "total": 0}
    for row in db.session.execute(_FACETS_SQL):
        if row.kind == "total":
            facets["total"] = row.n
        else:
            facets[row.kind].append([row.id if row.kind == "instructor" else row.name,
                                     row.name if row.kind == "instructor" else row.n])
    return facets


def catalog_facets() -> dict:
    """The choices of the catalog's filters with their counts of published courses: categories
    (sorted by name, ``category_counts``), levels (``level_counts``), instructors (sorted by name)
    and ``catalog_total``, from the shared cache or one statement (``_FACETS_SQL``)."""
    facets = cache.get_or_compute(CATALOG_FACETS_KEY, _count_facets, CATALOG_FACETS_SECONDS)
    return {"categories": [name for name, _ in facets["category"]], "category_counts": dict(facets["category"]),
            "levels": list(CourseLevel), "level_counts": dict(facets["level"]),
            "instructors": [Instructor(id_, name) for id_, name in facets["instructor"]],
            "catalog_total": facets["total"]}


def forget_catalog_facets() -> None:
    """For the services that change what the facets count: drop them when the change commits."""
    cache.invalidate_on_commit(CATALOG_FACETS_KEY)


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


def _course_statement(by_slug: bool):
    """The course, its instructor's name, the reader's enrolment and staff role: one statement,
    built once per key (slug or id) with the values as bound parameters."""
    key = Course.slug == bindparam("slug") if by_slug else Course.id == bindparam("course_id")
    return (
        select(Course, User.full_name, Enrollment, CourseManagement.role)
        .outerjoin(User, User.id == Course.instructor_id)
        .outerjoin(Enrollment, and_(Enrollment.course_id == Course.id, Enrollment.user_id == bindparam("user")))
        .outerjoin(CourseManagement, and_(CourseManagement.course_id == Course.id,
                                          CourseManagement.user_id == bindparam("user")))
        .where(key)
    )


_COURSE_BY_SLUG = _course_statement(by_slug=True)
_COURSE_BY_ID = _course_statement(by_slug=False)

#: Everything of the outline below the course in one statement, one row per lesson (with the
#: reader's progress on it, when enrolled) and per published quiz (with whether the reader
#: passed it): ``kind`` tells them apart, and the sort keys order the lessons by module and
#: position, the quizzes by creation. With ``:body_of``, that lesson's text comes along.
_OUTLINE_SQL = text("""
SELECT 'lesson' AS kind, m.id AS module_id, m.position AS module_position, m.title AS module_title,
       m.summary AS module_summary, m."requiresPrevious" AS requires_previous,
       l.id AS item_id, l.title AS item_title, l.position AS item_position,
       l."estimatedMinutes" AS estimated_minutes,
       CASE WHEN l.id = :body_of THEN l.body END AS body,
       p."lessonId" IS NOT NULL AS viewed, p."completedAt" IS NOT NULL AS done,
       NULL::timestamptz AS created_at
  FROM modules m
  LEFT JOIN lessons l ON l."moduleId" = m.id
  LEFT JOIN progress p ON :enrolled AND p."userId" = :user AND p."lessonId" = l.id
 WHERE m."courseId" = :course
UNION ALL
SELECT 'quiz', q."moduleId", NULL, NULL, NULL, NULL, q.id, q.title, NULL, NULL, NULL, NULL,
       EXISTS (SELECT 1 FROM quiz_attempts a
                WHERE a."quizId" = q.id AND a."userId" = :user AND a.passed IS TRUE),
       q."createdAt"
  FROM quizzes q
 WHERE q."courseId" = :course AND q.published IS TRUE
 ORDER BY kind, module_position, item_position, created_at, item_id
""")


def load_outline(user: User, *, slug: str | None = None, course_id: uuid.UUID | None = None,
                 body_of: uuid.UUID | None = None) -> Outline:
    """The outline of a course by slug or id, as ``user`` sees it; with ``body_of``, the text
    of that one lesson comes along in the same statement (``Outline.body``). Two statements:
    the course with the reader's enrolment and role, then its modules, lessons, the reader's
    progress and the published quizzes (``_OUTLINE_SQL``).

    Raises NotFound when there is no such course or it is not published and the reader is not
    on its staff (nor an admin): a draft is invisible, not forbidden."""
    if slug is not None:
        row = db.session.execute(_COURSE_BY_SLUG, {"slug": slug[:80], "user": user.id}).first()
    else:
        row = db.session.execute(_COURSE_BY_ID, {"course_id": course_id, "user": user.id}).first()
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
    course_quizzes: list[QuizItem] = []
    body = None
    params = {"course": course.id, "user": user.id, "enrolled": enrollment is not None, "body_of": body_of}
    for row in db.session.execute(_OUTLINE_SQL, params):
        if row.kind == "quiz":
            item = QuizItem(row.item_id, row.item_title, row.done)
            (by_id[row.module_id].quizzes if row.module_id in by_id else course_quizzes).append(item)
            continue
        module = by_id.get(row.module_id)
        if module is None:
            module = by_id[row.module_id] = ModuleItem(row.module_id, row.module_position, row.module_title,
                                                       row.module_summary, row.requires_previous)
            modules.append(module)
        if row.item_id is not None:
            module.lessons.append(LessonItem(row.item_id, row.item_title, row.item_position, row.estimated_minutes,
                                             row.module_id, viewed=row.viewed, completed=row.done))
            if row.body is not None:
                body = row.body

    return Outline(course, instructor_name, enrollment, staff_role, is_admin, modules, course_quizzes, body)


# --------------------------------------------------------------------------- dashboard


#: Everything the student dashboard shows of learning, in one statement: each section is a
#: limited, ordered subquery with its rank (``rn``) and the same generic columns, told apart by
#: ``section``. ``enrollment``: the courses the student is in, latest activity first (6);
#: ``achievement``: the latest achievements (5); ``due``: published assignments not yet
#: submitted and published quizzes not yet passed, of the active courses, that close after
#: ``:now``, soonest first (5); ``grade``: the latest released grades (3).
_DASHBOARD_SQL = text("""
(SELECT 'enrollment' AS section, e.id, e."courseId" AS ref_id, c.slug AS name, c.title, e.status AS state,
        e."progressPercent"::numeric AS n1, NULL::numeric AS n2, e."lastLessonId" AS link_id,
        NULL::timestamptz AS at, NULL::text AS body,
        row_number() OVER (ORDER BY e."lastActivityAt" DESC NULLS LAST, e."createdAt" DESC) AS rn
   FROM enrollments e JOIN courses c ON c.id = e."courseId"
  WHERE e."userId" = :user AND e.status <> 'left'
  ORDER BY rn LIMIT 6)
UNION ALL
(SELECT 'achievement', a.id, NULL, NULL, a.title, a.kind, NULL, NULL, NULL, a."earnedAt", NULL,
        row_number() OVER (ORDER BY a."earnedAt" DESC, a.id)
   FROM achievements a
  WHERE a."userId" = :user
  ORDER BY 12 LIMIT 5)
UNION ALL
(SELECT 'due', due.id, NULL, due.kind, due.title, NULL, NULL, NULL, NULL, due.at, due.course_title,
        row_number() OVER (ORDER BY due.at, due.id)
   FROM (SELECT 'assignment' AS kind, a.id, a.title, a."dueAt" AS at, c.title AS course_title
           FROM enrollments e
           JOIN assignments a ON a."courseId" = e."courseId"
           JOIN courses c ON c.id = e."courseId"
          WHERE e."userId" = :user AND e.status = 'active' AND a.published AND a."dueAt" > :now
            AND NOT EXISTS (SELECT 1 FROM submissions s WHERE s."assignmentId" = a.id AND s."userId" = :user)
         UNION ALL
         SELECT 'quiz', q.id, q.title, q."closesAt", c.title
           FROM enrollments e
           JOIN quizzes q ON q."courseId" = e."courseId"
           JOIN courses c ON c.id = e."courseId"
          WHERE e."userId" = :user AND e.status = 'active' AND q.published AND q."closesAt" > :now
            AND NOT EXISTS (SELECT 1 FROM quiz_attempts t
                             WHERE t."quizId" = q.id AND t."userId" = :user AND t.passed IS TRUE)) due
  ORDER BY 12 LIMIT 5)
UNION ALL
(SELECT 'grade', g.id, a.id, NULL, a.title, NULL, g.score, a.points, NULL, g."releasedAt", g.feedback,
        row_number() OVER (ORDER BY g."releasedAt" DESC, g.id)
   FROM grades g JOIN assignments a ON a.id = g."assignmentId"
  WHERE g."userId" = :user AND g."releasedAt" IS NOT NULL
  ORDER BY 12 LIMIT 3)
ORDER BY section, rn
""")


@dataclass(frozen=True, slots=True)
class CourseRef:
    slug: str
    title: str


@dataclass(frozen=True, slots=True)
class DashboardEnrollment:
    """A course the student is in, as the dashboard shows it."""

    id: uuid.UUID
    course_id: uuid.UUID
    course: CourseRef
    status: EnrollmentStatus
    progress_percent: int
    last_lesson_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class DashboardAchievement:
    kind: AchievementKind
    title: str
    earned_at: datetime


@dataclass(frozen=True, slots=True)
class RecentGrade:
    score: Decimal
    feedback: str
    released_at: datetime
    assignment_id: uuid.UUID
    title: str
    points: Decimal


def student_dashboard(user: User) -> dict:
    """What the student dashboard shows of learning: the courses a student is in (latest
    activity first) with their progress and where to continue, their latest achievements, what
    is due next and their latest released grades. One statement (``_DASHBOARD_SQL``)."""
    from portal.db.base import utcnow

    sections: dict[str, list] = {"enrollment": [], "achievement": [], "due": [], "grade": []}
    for row in db.session.execute(_DASHBOARD_SQL, {"user": user.id, "now": utcnow()}):
        if row.section == "enrollment":
            item = DashboardEnrollment(row.id, row.ref_id, CourseRef(row.name, row.title), EnrollmentStatus(row.state),
                                       int(row.n1), row.link_id)
        elif row.section == "achievement":
            item = DashboardAchievement(AchievementKind(row.state), row.title, row.at)
        elif row.section == "due":
            item = DueItem(row.name, row.id, row.title, row.at, row.body)
        else:
            item = RecentGrade(row.n1, row.body, row.at, row.ref_id, row.title, row.n2)
        sections[row.section].append(item)
    return {"enrollments": sections["enrollment"], "achievements": sections["achievement"],
            "due_next": sections["due"], "recent_grades": sections["grade"]}


@dataclass(frozen=True)
class DueItem:
    kind: str  #: ``assignment`` or ``quiz``
    id: uuid.UUID
    title: str
    due_at: object
    course_title: str


def my_enrollments(user: User, limit: int = 200) -> list:
    """Every course the student is in (not left), latest activity first, with their progress:
    rows of (id, course_id, slug, title, status, progress_percent). One statement; the JSON API
    lists them (the dashboard shows only the latest few)."""
    stmt = (select(Enrollment.id, Enrollment.course_id, Course.slug, Course.title, Enrollment.status,
                   Enrollment.progress_percent)
            .join(Course, Course.id == Enrollment.course_id)
            .where(Enrollment.user_id == user.id, Enrollment.status != EnrollmentStatus.LEFT)
            .order_by(Enrollment.last_activity_at.desc().nulls_last(), Enrollment.created_at.desc(), Enrollment.id)
            .limit(limit))
    return list(db.session.execute(stmt).all())


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
