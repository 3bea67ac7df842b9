"""The gradebook: every student of a course by every graded item, and each student's overall
grade kept current in ``gradebooks``.

How the overall grade is made (``course.grading``, defaults in ``DEFAULT_GRADING``):

- Items are the course's published assignments and quizzes, in two categories.
- An item counts once it has a score the student may see: a released assignment grade, a graded
  quiz attempt (the quiz's own rule says which attempt counts). Items without one are left out
  ("the grade so far"), not counted as zero.
- In each category the lowest ``drop_lowest[category]`` item percentages are dropped (never the
  last one left), and the category's percentage is the mean of the rest: each item weighs the same
  inside its category, whatever its points.
- The overall percentage is the weighted mean of the categories that have a counted item, the
  weights scaled to the categories present.
- The letter is the first of the scale (best first) whose threshold the percentage reaches; a
  grader's override replaces the computed percentage for the letter and status.

Pages and the CSV export read one query for the students and their scores, so the statement
count does not grow with the course. The query picks the page's students first (by name, after
the keyset cursor, limited), and only then reads their gradebook rows and aggregates their scores
(correlated subqueries on the page's rows, through the ``(userId, assignmentId)`` and ``userId``
indexes, on the item ids already read): the cost of a page is that of its 50 students, not of the
course, whatever the planner guesses about row-security filters. The export streams the same
query, unlimited, through a server-side cursor, in batches of lines.
"""

from __future__ import annotations

import base64
import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlalchemy import and_, bindparam, select, text
from sqlalchemy.dialects.postgresql import insert

from portal.accounts.models import User
from portal.db import db
from portal.errors import DomainError, NotFound
from portal.exports import csv_safe
from portal.learning.assessment.models import Gradebook, GradebookStatus
from portal.learning.education.models import Course, Enrollment, EnrollmentStatus
from portal.learning.lms import access
from portal.learning.lms.models import CourseManagement
from portal.pagination import Page

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
ASSIGNMENTS = "assignments"
QUIZZES = "quizzes"
CATEGORIES = (ASSIGNMENTS, QUIZZES)
DEFAULT_GRADING = {
    "weights": {ASSIGNMENTS: 50, QUIZZES: 50},
    "drop_lowest": {ASSIGNMENTS: 0, QUIZZES: 0},
    "letters": [["A", 90], ["B", 80], ["C", 70], ["D", 60], ["F", 0]],
}
PAGE_SIZE = 50


# ---------------------------------------------------------------------------------- the scheme


@dataclass(frozen=True)
class Scheme:
    weights: dict[str, Decimal]
    drop_lowest: dict[str, int]
    #: Best first; the last one's threshold is 0.
    letters: tuple[tuple[str, Decimal], ...]

    @classmethod
    def from_course(cls, grading: dict | None) -> Scheme:
        grading = grading or {}
        weights = {**DEFAULT_GRADING["weights"], **(grading.get("weights") or {})}
        drops = {**DEFAULT_GRADING["drop_lowest"], **(grading.get("drop_lowest") or {})}
        letters = grading.get("letters") or DEFAULT_GRADING["letters"]
        ordered = sorted(((str(name), Decimal(str(threshold))) for name, threshold in letters),
                         key=lambda pair: pair[1], reverse=True)
        if ordered[-1][1] != 0:
            ordered.append(("F", Decimal(0)))
        return cls(weights={c: Decimal(str(weights.get(c, 0))) for c in CATEGORIES},
                   drop_lowest={c: max(0, int(drops.get(c, 0))) for c in CATEGORIES},
                   letters=tuple(ordered))

    def letter(self, percent: Decimal | None) -> str | None:
        if percent is None:
            return None
        for name, threshold in self.letters:
            if percent >= threshold:
                return name
        return self.letters[-1][0]

    def passing(self, percent: Decimal) -> bool:
        """Passing: any letter but the scale's lowest."""
        return self.letter(percent) != self.letters[-1][0]


def validate_grading(grading: dict) -> dict:
    """Check a course's grading settings (for the course editor): weights 0 to 100 adding to
    100, drops 0 to 10, letters with thresholds 0 to 100. Returns the cleaned settings."""
    try:
        weights = {c: Decimal(str((grading.get("weights") or {}).get(c, 0))) for c in CATEGORIES}
        drops = {c: int((grading.get("drop_lowest") or {}).get(c, 0)) for c in CATEGORIES}
        letters = [[str(name).strip()[:4], float(Decimal(str(threshold)))]
                   for name, threshold in (grading.get("letters") or DEFAULT_GRADING["letters"])]
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise DomainError("The grading settings must be numbers.", field="grading") from exc
    if any(w < 0 or w > 100 for w in weights.values()) or sum(weights.values()) != 100:
        raise DomainError("Category weights are 0 to 100 and add up to 100.", field="grading")
    if any(d < 0 or d > 10 for d in drops.values()):
        raise DomainError("Drop lowest is between 0 and 10 items.", field="grading")
    if any(not name or t < 0 or t > 100 for name, t in letters):
        raise DomainError("Each letter needs a name and a threshold from 0 to 100.", field="grading")
    return {"weights": {c: float(w) for c, w in weights.items()}, "drop_lowest": drops, "letters": letters}


# ---------------------------------------------------------------------------------- computing


@dataclass(frozen=True)
class Item:
    category: str
    id: uuid.UUID
    title: str
    points: Decimal | None  #: assignments only; quizzes count by percentage
    #: ``str(id)``, the key of the item in a student's scores (made once, not once per student).
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", str(self.id))


@dataclass
class Result:
    percent: Decimal | None
    letter: str | None
    categories: dict[str, Decimal | None] = field(default_factory=dict)
    #: (category, item id) of the items dropped as lowest.
    dropped: set = field(default_factory=set)
    counted: int = 0


def compute(scheme: Scheme, items: list[Item], assignment_scores: dict[str, Decimal],
            quiz_percents: dict[str, Decimal]) -> Result:
    """The overall grade from one student's scores (``{item id as str: score or percent}``)."""
    by_category: dict[str, list[tuple[Decimal, uuid.UUID]]] = {c: [] for c in CATEGORIES}
    for item in items:
        key = item.key
        if item.category == ASSIGNMENTS:
            if key in assignment_scores and item.points:
                by_category[ASSIGNMENTS].append((Decimal(assignment_scores[key]) * HUNDRED / item.points, item.id))
        elif key in quiz_percents:
            by_category[QUIZZES].append((Decimal(quiz_percents[key]), item.id))
    result = Result(percent=None, letter=None)
    weighted = Decimal(0)
    weight_total = Decimal(0)
    for category, values in by_category.items():
        result.counted += len(values)
        if not values:
            result.categories[category] = None
            continue
        drop = min(scheme.drop_lowest.get(category, 0), len(values) - 1)
        if drop:
            ordered = sorted(values, key=lambda pair: (pair[0], str(pair[1])))
            for _, item_id in ordered[:drop]:
                result.dropped.add((category, item_id))
            kept = ordered[drop:]
        else:
            kept = values
        mean = sum((value for value, _ in kept), Decimal(0)) / len(kept)
        result.categories[category] = mean.quantize(CENT, rounding=ROUND_HALF_UP)
        weight = scheme.weights.get(category, Decimal(0))
        weighted += mean * weight
        weight_total += weight
    if weight_total > 0:
        result.percent = min(HUNDRED, (weighted / weight_total).quantize(CENT, rounding=ROUND_HALF_UP))
        result.letter = scheme.letter(result.percent)
    return result


def _status(scheme: Scheme, effective: Decimal | None, enrollment_status) -> GradebookStatus:
    if enrollment_status == EnrollmentStatus.COMPLETED:
        return GradebookStatus.COMPLETED
    if effective is None:
        return GradebookStatus.IN_PROGRESS
    return GradebookStatus.PASSING if scheme.passing(effective) else GradebookStatus.FAILING


def course_items(course_id: uuid.UUID) -> list[Item]:
    """Published assignments, then published quizzes, of the course (one query)."""
    rows = db.session.execute(text(
        "SELECT 'assignments' AS category, id, title, points, \"dueAt\" AS at FROM assignments "
        "WHERE \"courseId\" = :course AND published "
        "UNION ALL SELECT 'quizzes', id, title, NULL, \"closesAt\" FROM quizzes "
        "WHERE \"courseId\" = :course AND published "
        "ORDER BY category, at NULLS LAST, title, id"), {"course": course_id}).all()
    return [Item(category=row.category, id=row.id, title=row.title, points=row.points) for row in rows]


#: The enrolled students (``page``: by name, after the cursor, limited) with their gradebook row
#: and, as JSON objects keyed by item id, their visible assignment scores and counting quiz
#: percentages, over the published items' ids (``:assignments``, ``:quizzes``, read first by
#: ``course_items``). The page's students are chosen before anything else is read, so the
#: subqueries and the gradebook lookups run for them only; the gradebook row is a LATERAL lookup
#: on ``(courseId, userId)`` (unique) so that no row-security estimate can turn it into a join
#: against every gradebook row of the course. The quiz rule mirrors
#: ``portal.learning.assessment.services.quiz_score``.
_STUDENTS_SQL = """
WITH page AS MATERIALIZED (
    SELECT u.id AS user_id, u."fullName" AS full_name, u.email, e.status AS enrollment_status
      FROM enrollments e
      JOIN users u ON u.id = e."userId"
     WHERE e."courseId" = :course AND e.status <> 'left' {where}
     ORDER BY u."fullName", u.id
     {limit}
)
SELECT p.user_id, p.full_name, p.email, p.enrollment_status,
       g.percent, g.letter, g.override_percent, g.override_reason,
       (SELECT jsonb_object_agg(gr."assignmentId"::text, gr.score::text)
          FROM grades gr
         WHERE gr."userId" = p.user_id AND gr."assignmentId" = ANY(CAST(:assignments AS uuid[]))
           AND gr."releasedAt" IS NOT NULL) AS assignment_scores,
       (SELECT jsonb_object_agg(s.quiz_id::text, s.pct::text) FROM (
           SELECT qa."quizId" AS quiz_id,
                  CASE q.scoring
                    WHEN 'latest' THEN (array_agg(qa.percent ORDER BY qa.number DESC))[1]
                    WHEN 'first' THEN (array_agg(qa.percent ORDER BY qa.number))[1]
                    WHEN 'average' THEN round(avg(qa.percent), 2)
                    ELSE max(qa.percent) END AS pct
             FROM quiz_attempts qa JOIN quizzes q ON q.id = qa."quizId"
            WHERE qa."userId" = p.user_id AND qa."quizId" = ANY(CAST(:quizzes AS uuid[]))
              AND qa.status = 'graded' AND qa.percent IS NOT NULL
            GROUP BY qa."quizId", q.scoring) s) AS quiz_scores
  FROM page p
  LEFT JOIN LATERAL (
        SELECT g.percent, g.letter, g."overridePercent" AS override_percent,
               g."overrideReason" AS override_reason
          FROM gradebooks g
         WHERE g."courseId" = :course AND g."userId" = p.user_id
         LIMIT 1) g ON true
 ORDER BY p.full_name, p.user_id
"""


@dataclass
class StudentRow:
    user_id: uuid.UUID
    full_name: str
    email: str
    assignment_scores: dict[str, Decimal]
    quiz_percents: dict[str, Decimal]
    result: Result
    override_percent: Decimal | None
    override_reason: str | None

    @property
    def effective_percent(self) -> Decimal | None:
        return self.override_percent if self.override_percent is not None else self.result.percent


def _student_row(scheme: Scheme, items: list[Item], row) -> StudentRow:
    scores = {k: Decimal(v) for k, v in (row.assignment_scores or {}).items()}
    percents = {k: Decimal(v) for k, v in (row.quiz_scores or {}).items()}
    return StudentRow(user_id=row.user_id, full_name=row.full_name, email=row.email, assignment_scores=scores,
                      quiz_percents=percents, result=compute(scheme, items, scores, percents),
                      override_percent=row.override_percent, override_reason=row.override_reason)


def _students_stmt(where: str = "", limit: str = ""):
    return text(_STUDENTS_SQL.format(where=where, limit=limit))


def _students_params(course_id: uuid.UUID, items: list[Item], **more) -> dict:
    return {"course": course_id, **more,
            "assignments": [item.id for item in items if item.category == ASSIGNMENTS],
            "quizzes": [item.id for item in items if item.category == QUIZZES]}


# ---------------------------------------------------------------------------------- keeping current


def recompute(course_id: uuid.UUID, user_id: uuid.UUID) -> Gradebook | None:
    """Bring the student's ``gradebooks`` row up to date (insert or update; an override is
    kept). Called whenever a grade is released or changed after release, and when a quiz
    attempt is graded. None when the student is not enrolled."""
    course = db.session.get(Course, course_id)
    if course is None:
        return None
    scheme = Scheme.from_course(course.grading)
    items = course_items(course_id)
    row = db.session.execute(_students_stmt('AND e."userId" = :user'),
                             _students_params(course_id, items, user=user_id)).first()
    if row is None:
        return None
    student = _student_row(scheme, items, row)
    effective = student.effective_percent
    values = {"percent": student.result.percent, "letter": scheme.letter(effective),
              "status": _status(scheme, effective, EnrollmentStatus(row.enrollment_status))}
    stmt = insert(Gradebook).values(course_id=course_id, user_id=user_id, **values)
    stmt = stmt.on_conflict_do_update(index_elements=[Gradebook.course_id, Gradebook.user_id], set_=values)
    db.session.execute(stmt)
    db.session.expire_all()  # a loaded Gradebook instance would be stale now
    return db.session.scalar(select(Gradebook).where(Gradebook.course_id == course_id,
                                                     Gradebook.user_id == user_id))


def recompute_course(course_id: uuid.UUID, batch: int = 500) -> int:
    """Bring every enrolled student's ``gradebooks`` row up to date, e.g. after the course's
    grading scheme changed: one query for all the students' scores, then one upsert per
    ``batch`` students (overrides are kept). Returns how many rows were written."""
    course = db.session.get(Course, course_id)
    if course is None:
        return 0
    scheme = Scheme.from_course(course.grading)
    items = course_items(course_id)
    values = []
    for row in db.session.execute(_students_stmt(), _students_params(course_id, items)):
        student = _student_row(scheme, items, row)
        effective = student.effective_percent
        values.append({"course_id": course_id, "user_id": student.user_id, "percent": student.result.percent,
                       "letter": scheme.letter(effective),
                       "status": _status(scheme, effective, EnrollmentStatus(row.enrollment_status))})
    for start in range(0, len(values), batch):
        stmt = insert(Gradebook).values(values[start:start + batch])
        stmt = stmt.on_conflict_do_update(
            index_elements=[Gradebook.course_id, Gradebook.user_id],
            set_={"percent": stmt.excluded.percent, "letter": stmt.excluded.letter, "status": stmt.excluded.status})
        db.session.execute(stmt)
    db.session.expire_all()
    return len(values)


def set_override(actor: User, course_id: uuid.UUID, user_id: uuid.UUID, percent: Decimal | None,
                 reason: str | None) -> Gradebook:
    """Replace (or, with ``percent=None``, remove) a student's computed percentage. A reason is
    required: it is shown beside the grade and kept in the audit trail."""
    if db.session.get(Course, course_id) is None:
        raise NotFound("That course does not exist.")
    access.require(actor, course_id, access.CAN_RELEASE, "override grades in this course")
    enrolled = db.session.scalar(select(Enrollment.id).where(Enrollment.course_id == course_id,
                                                             Enrollment.user_id == user_id))
    if enrolled is None:
        raise NotFound("That student is not enrolled in this course.")
    reason = (reason or "").strip()
    if percent is not None:
        if percent < 0 or percent > 100:
            raise DomainError("An override is a percentage from 0 to 100.", field="percent")
        if not reason:
            raise DomainError("Give the reason for the override.", field="reason")
        if len(reason) > 500:
            raise DomainError("The reason is at most 500 characters.", field="reason")
        percent = percent.quantize(CENT, rounding=ROUND_HALF_UP)
    values = {"override_percent": percent, "override_reason": reason if percent is not None else None}
    stmt = insert(Gradebook).values(course_id=course_id, user_id=user_id, **values)
    db.session.execute(stmt.on_conflict_do_update(index_elements=[Gradebook.course_id, Gradebook.user_id],
                                                  set_=values))
    return recompute(course_id, user_id)


# ---------------------------------------------------------------------------------- pages


@dataclass
class GradebookPage:
    course: Course
    scheme: Scheme
    items: list[Item]
    page: Page  #: items are StudentRow
    can_override: bool


#: The course with the actor's role on its staff (for ``access``), in one statement.
_COURSE_AND_ROLE = (
    select(Course, CourseManagement.role)
    .outerjoin(CourseManagement, and_(CourseManagement.course_id == Course.id,
                                      CourseManagement.user_id == bindparam("user")))
    .where(Course.id == bindparam("course"))
)


def _staff_course(actor: User, course_id: uuid.UUID) -> Course:
    row = db.session.execute(_COURSE_AND_ROLE, {"course": course_id, "user": actor.id}).first()
    if row is None:
        raise NotFound("That course does not exist.")
    course, role = row
    access.remember_management_role(actor, course_id, role)
    access.require(actor, course_id, access.CAN_GRADE, "see this course's gradebook")
    return course


def encode_cursor_name(name: str, user_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{user_id}|{name}".encode()).decode().rstrip("=")


def decode_cursor_name(cursor: str | None) -> tuple[str, uuid.UUID] | None:
    if not cursor or len(cursor) > 400:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        user_id, name = raw.split("|", 1)
        return name, uuid.UUID(user_id)
    except (ValueError, UnicodeDecodeError):
        return None


def gradebook_page(actor: User, course_id: uuid.UUID, cursor: str | None = None,
                   size: int = PAGE_SIZE) -> GradebookPage:
    """One page of students (by name) with every item: a fixed number of queries."""
    course = _staff_course(actor, course_id)
    scheme = Scheme.from_course(course.grading)
    items = course_items(course_id)
    params = _students_params(course_id, items, size=size + 1)
    where = ""
    position = decode_cursor_name(cursor)
    if position is not None:
        where = 'AND (u."fullName", u.id) > (:after_name, :after_id)'
        params.update(after_name=position[0], after_id=position[1])
    rows = [_student_row(scheme, items, row)
            for row in db.session.execute(_students_stmt(where, "LIMIT :size"), params)]
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = encode_cursor_name(rows[-1].full_name, rows[-1].user_id)
    return GradebookPage(course=course, scheme=scheme, items=items, page=Page(rows, next_cursor),
                         can_override=access.may(actor, course_id, access.CAN_RELEASE))


# ---------------------------------------------------------------------------------- CSV


#: Students written per chunk of the CSV: one chunk is a few dozen KB, and the server-side
#: cursor fetches a batch (``batch``) at a time, so neither grows with the course.
CSV_ROWS_PER_CHUNK = 100


def _csv_number(value: Decimal | None) -> str:
    """A score or percentage in the CSV: always two places (``100.00``, ``0.00``), whichever
    source it came from (a computed value, an override, a quiz percentage read from JSON as
    ``100``, made a Decimal by ``_student_row``); empty when there is none."""
    return "" if value is None else str(value.quantize(CENT, rounding=ROUND_HALF_UP))


@dataclass
class GradebookExport:
    course: Course
    #: The CSV, streamed (``export_csv``).
    lines: Iterator[str]


def csv_export(actor: User, course_id: uuid.UUID, batch: int = 100) -> GradebookExport:
    """``export_csv`` with the course it exports (the view names the file after it)."""
    course = _staff_course(actor, course_id)
    return GradebookExport(course, export_csv(actor, course_id, batch, course=course))


def export_csv(actor: User, course_id: uuid.UUID, batch: int = 100, *, course: Course | None = None) -> Iterator[str]:
    """The whole gradebook as CSV, streamed: the student query runs on a server-side cursor
    (``batch`` rows fetched at a time) and rows are written as they arrive, in chunks of
    ``CSV_ROWS_PER_CHUNK`` lines, so memory does not grow with the course.
    The access check runs before the first line is produced (call ``next`` or check first).

    Names, e-mails, titles and reasons go through ``csv_safe``; the numbers are ones we format
    (non-negative, CHECKed in the database), which no spreadsheet reads as a formula."""
    if course is None:
        course = _staff_course(actor, course_id)
    scheme = Scheme.from_course(course.grading)
    items = course_items(course_id)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)

        def flush() -> str:
            chunk = buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            return chunk

        writer.writerow(["Student", "E-mail",
                         *[csv_safe(f"{item.title} ({'assignment' if item.category == ASSIGNMENTS else 'quiz'})")
                           for item in items],
                         "Computed %", "Override %", "Override reason", "Final %", "Letter"])
        yield flush()
        sources = [(item.category == ASSIGNMENTS, item.key) for item in items]
        result = db.session.execute(_students_stmt(), _students_params(course_id, items),
                                    execution_options={"stream_results": True, "yield_per": batch})
        written = 0
        for row in result:
            student = _student_row(scheme, items, row)
            scores, percents = student.assignment_scores, student.quiz_percents
            effective = student.effective_percent
            writer.writerow([csv_safe(student.full_name), csv_safe(student.email),
                             *[_csv_number((scores if is_assignment else percents).get(key))
                               for is_assignment, key in sources],
                             _csv_number(student.result.percent), _csv_number(student.override_percent),
                             csv_safe(student.override_reason or ""), _csv_number(effective),
                             csv_safe(scheme.letter(effective) or "")])
            written += 1
            if written % CSV_ROWS_PER_CHUNK == 0:
                yield flush()
        if written % CSV_ROWS_PER_CHUNK:
            yield flush()

    return lines()


def gradebook_for_student(user: User, course_id: uuid.UUID) -> Gradebook | None:
    """A student's own gradebook row (RLS shows them only theirs)."""
    return db.session.scalar(select(Gradebook).where(Gradebook.course_id == course_id,
                                                     Gradebook.user_id == user.id))
