"""Course authoring: courses, their modules and lessons, order, and the course's status.

Every function takes the acting user, checks what they may do to the course
(``portal.learning.lms.access``), validates the input against the same limits the database's
CHECK constraints hold (so user input never makes the database raise), changes rows and
flushes. The caller commits.

Structure changes (adding, deleting and moving modules and lessons) first lock the course row
with ``SELECT ... FOR UPDATE``: two editors working on one course at once are serialised, so
positions stay dense (1, 2, 3, ...) and unique. Moving swaps the positions of two neighbours in
one transaction; the unique ``(course, position)`` constraints are deferred to the commit, so
the intermediate state of the swap is allowed.

A course's outline is bounded (``MAX_MODULES`` modules of ``MAX_LESSONS`` lessons), which is
why the editor shows it whole rather than in pages.
"""

from __future__ import annotations

import re
import unicodedata
import uuid

from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError

from portal import events
from portal.accounts.models import Role, User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.learning.assessment import gradebook
from portal.learning.education.models import (
    COURSE_LANGUAGES,
    COURSE_TRANSITIONS,
    Course,
    CourseLevel,
    CourseStatus,
    Lesson,
    Module,
    Progress,
)
from portal.learning.education.queries import forget_catalog_facets
from portal.learning.lms import access
from portal.learning.lms.models import CourseManagement, ManagementRole
from portal.learning.markdown import MAX_SOURCE
from portal.learning.tutoring import passages


class InvalidInput(DomainError):
    status_code = 422


class InvalidTransition(DomainError):
    status_code = 409


# Limits, the same as the columns and CHECK constraints of the models.
TITLE_MIN, TITLE_MAX = 3, 160
SLUG_MAX = 80
SUMMARY_MAX = 500
CATEGORY_MAX = 60
HOURS_MIN, HOURS_MAX = 1, 1000
MINUTES_MIN, MINUTES_MAX = 1, 600
TEXT_MAX = MAX_SOURCE  #: Markdown bodies: the longest source the renderer accepts
MAX_MODULES = 50
MAX_LESSONS = 50  #: per module

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

#: The verb shown for each status change, for buttons and messages.
TRANSITION_VERBS = {
    CourseStatus.PUBLISHED: "publish",
    CourseStatus.DRAFT: "move to draft",
    CourseStatus.ARCHIVED: "archive",
}


# ---------------------------------------------------------------- input cleaning


def _text(value: str | None, *, field: str, label: str, max_len: int, min_len: int = 0) -> str:
    """Trimmed text within length limits. NUL characters cannot be stored by PostgreSQL and
    mean nothing in text a person typed, so they are dropped."""
    value = (value or "").replace("\x00", "").strip()
    if min_len and len(value) < min_len:
        if not value:
            raise InvalidInput(f"Enter the {label}.", field=field)
        raise InvalidInput(f"The {label} must be at least {min_len} characters long.", field=field)
    if len(value) > max_len:
        raise InvalidInput(f"The {label} must be at most {max_len:,} characters long (it has {len(value):,}).",
                           field=field)
    return value


def _line(value: str | None, **kwargs) -> str:
    """One line of text: runs of whitespace (newlines included) become one space."""
    return _text(" ".join((value or "").split()), **kwargs)


def _bounded_int(value, *, field: str, label: str, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"The {label} must be a whole number.", field=field) from exc
    if not low <= number <= high:
        raise InvalidInput(f"The {label} must be between {low} and {high:,}.", field=field)
    return number


def suggest_slug(title: str | None) -> str:
    """A URL name made from ``title``: accents dropped, lower case, words joined by hyphens."""
    folded = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode().lower()
    slug = "-".join(re.findall(r"[a-z0-9]+", folded))
    if len(slug) > SLUG_MAX:
        slug = slug[:SLUG_MAX].rstrip("-")
    return slug


def free_slug(base: str, *, except_course: uuid.UUID | None = None) -> str:
    """``base`` if no other course uses it, else ``base-2``, ``base-3``...; one query."""
    base = base or "course"
    pattern = base.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    stmt = select(Course.slug).where(Course.slug.like(pattern, escape="\\"))
    if except_course is not None:
        stmt = stmt.where(Course.id != except_course)
    taken = set(db.session.scalars(stmt))
    if base not in taken:
        return base
    number = 2
    while True:
        suffix = f"-{number}"
        candidate = base[:SLUG_MAX - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
        number += 1


def slug_taken(slug: str, *, except_course: uuid.UUID | None = None) -> bool:
    stmt = select(Course.id).where(Course.slug == slug)
    if except_course is not None:
        stmt = stmt.where(Course.id != except_course)
    return db.session.scalar(select(exists(stmt))) or False


def _clean_slug(slug: str | None, title: str, *, except_course: uuid.UUID | None) -> str:
    slug = (slug or "").replace("\x00", "").strip()
    if not slug:  # left empty: made from the title, and made free
        slug = suggest_slug(title)
        if not slug:
            raise InvalidInput("Enter a web address made of letters, digits and hyphens.", field="slug")
        return free_slug(slug, except_course=except_course)
    if len(slug) > SLUG_MAX:
        raise InvalidInput(f"The web address must be at most {SLUG_MAX} characters long.", field="slug")
    if not SLUG_PATTERN.fullmatch(slug):
        raise InvalidInput("Use lowercase letters, digits and single hyphens between words (like "
                           "\"intro-to-finance\"), with no hyphen at either end.", field="slug")
    if slug_taken(slug, except_course=except_course):
        raise InvalidInput(f"Another course already uses \"{slug}\". Choose another web address "
                           f"(\"{free_slug(slug, except_course=except_course)}\" is free).", field="slug")
    return slug


def _clean_course(fields: dict, *, except_course: uuid.UUID | None) -> dict:
    title = _line(fields.get("title"), field="title", label="title", min_len=TITLE_MIN, max_len=TITLE_MAX)
    level = fields.get("level")
    try:
        level = CourseLevel(level)
    except ValueError as exc:
        raise InvalidInput("Choose a level.", field="level") from exc
    return {
        "title": title,
        "slug": _clean_slug(fields.get("slug"), title, except_course=except_course),
        "summary": _line(fields.get("summary"), field="summary", label="summary", max_len=SUMMARY_MAX),
        "description": _text(fields.get("description"), field="description", label="description",
                             max_len=TEXT_MAX),
        "category": _line(fields.get("category"), field="category", label="category", min_len=2,
                          max_len=CATEGORY_MAX),
        "level": level,
        "estimated_hours": _bounded_int(fields.get("estimated_hours"), field="estimated_hours",
                                        label="estimated hours", low=HOURS_MIN, high=HOURS_MAX),
        "requires_all_lessons": bool(fields.get("requires_all_lessons")),
        "requires_quizzes_passed": bool(fields.get("requires_quizzes_passed")),
        "requires_assignments_submitted": bool(fields.get("requires_assignments_submitted")),
        **_clean_language(fields),
    }


def _clean_language(fields: dict) -> dict:
    """``language`` when given (one of COURSE_LANGUAGES); left out, the course keeps its own
    (a new one gets the default)."""
    language = fields.get("language")
    if language is None:
        return {}
    if language not in COURSE_LANGUAGES:
        raise InvalidInput("Choose the language the lessons are written in.", field="language")
    return {"language": language}


def _flush_course(course: Course) -> None:
    """Flush, turning a slug taken by a concurrent request (the unique index) into a message."""
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        if "slug" not in str(exc.orig):
            raise
        raise InvalidInput(f"Another course already uses \"{course.slug}\". Choose another web address.",
                           field="slug") from exc


# ---------------------------------------------------------------- loading with access checks


def get_course(course_id: uuid.UUID, *, lock: bool = False) -> Course:
    stmt = select(Course).where(Course.id == course_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    course = db.session.scalar(stmt)
    if course is None:
        raise NotFound("That course does not exist.")
    return course


def course_for(actor: User, course_id: uuid.UUID, allowed=access.CAN_EDIT, what: str = "edit this course", *,
               lock: bool = False) -> Course:
    """The course, if ``actor`` may do ``what`` to it (NotFound first, then Forbidden)."""
    course = get_course(course_id, lock=lock)
    access.require(actor, course.id, allowed, what)
    return course


def _module_for(actor: User, module_id: uuid.UUID, *, lock: bool = True) -> tuple[Module, Course]:
    module = db.session.get(Module, module_id)
    if module is None:
        raise NotFound("That module does not exist.")
    course = course_for(actor, module.course_id, lock=lock)
    return module, course


def _lesson_for(actor: User, lesson_id: uuid.UUID, *, lock: bool = True) -> tuple[Lesson, Course]:
    lesson = db.session.get(Lesson, lesson_id)
    if lesson is None:
        raise NotFound("That lesson does not exist.")
    course = course_for(actor, lesson.course_id, lock=lock)
    return lesson, course


def get_module(actor: User, module_id: uuid.UUID) -> Module:
    """A module the actor may edit (for the edit forms)."""
    return _module_for(actor, module_id, lock=False)[0]


def get_lesson(actor: User, lesson_id: uuid.UUID) -> Lesson:
    """A lesson the actor may edit (for the lesson editor)."""
    return _lesson_for(actor, lesson_id, lock=False)[0]


# ---------------------------------------------------------------- courses


def create_course(actor: User, **fields) -> Course:
    """A new draft course. The creator becomes its ``owner`` and the instructor the catalog shows.

    ``fields``: title, slug (empty: made from the title), summary, description, category,
    level, estimated_hours, requires_all_lessons, requires_quizzes_passed,
    requires_assignments_submitted."""
    if actor.role not in (Role.FACULTY, Role.ADMIN):
        raise Forbidden("Only faculty members and administrators create courses.")
    values = _clean_course(fields, except_course=None)
    course = Course(status=CourseStatus.DRAFT, instructor_id=actor.id, **values)
    db.session.add(course)
    _flush_course(course)
    db.session.add(CourseManagement(course_id=course.id, user_id=actor.id, role=ManagementRole.OWNER))
    db.session.flush()
    forget_catalog_facets()
    return course


def update_course(actor: User, course_id: uuid.UUID, **fields) -> Course:
    """Change a course's settings (same fields as ``create_course``); owners and instructors.

    ``grading`` (optional): the gradebook's scheme (category weights, drop-lowest per category,
    letter scale), checked by ``gradebook.validate_grading``. When the scheme changes, every
    enrolled student's gradebook row is recomputed in the same transaction."""
    course = course_for(actor, course_id, what="edit this course's settings")
    grading = fields.pop("grading", None)
    values = _clean_course(fields, except_course=course.id)
    scheme_changed = False
    if grading is not None:
        cleaned = gradebook.validate_grading(grading)
        cleaned["letters"] = sorted(cleaned["letters"], key=lambda pair: pair[1], reverse=True)
        scheme_changed = gradebook.Scheme.from_course(course.grading) != gradebook.Scheme.from_course(cleaned)
        if cleaned != course.grading:
            values["grading"] = cleaned
    language_changed = values.get("language", course.language) != course.language
    if any(values.get(name, getattr(course, name)) != getattr(course, name) for name in ("category", "level")):
        forget_catalog_facets()  # the catalog counts courses per category and level
    for name, value in values.items():
        setattr(course, name, value)
    _flush_course(course)
    if scheme_changed:
        gradebook.recompute_course(course.id)
    if language_changed:
        # The tutor searches the lessons stemmed in the course's language.
        passages.reindex_course(course)
    return course


def change_status(actor: User, course_id: uuid.UUID, target: CourseStatus | str) -> Course:
    """Publish, unpublish or archive, as ``COURSE_TRANSITIONS`` allows.

    Publishing needs at least one lesson (so at least one module holding it); the first
    publication sets ``published_at``, which later ones keep."""
    try:
        target = CourseStatus(target)
    except ValueError as exc:
        raise InvalidInput("Choose what to do with the course.") from exc
    course = course_for(actor, course_id, what=f"{TRANSITION_VERBS[target]} this course", lock=True)
    # (Checked after access, so someone off the staff learns nothing about the course.)
    if target == course.status:
        return course
    if target not in COURSE_TRANSITIONS[course.status]:
        raise InvalidTransition(f"A course that is {course.status.value} cannot be "
                                f"{'unpublished' if target == CourseStatus.DRAFT else target.value}"
                                f"{' (restore it to draft first)' if course.status == CourseStatus.ARCHIVED else ''}.")
    if target == CourseStatus.PUBLISHED:
        has_lesson = db.session.scalar(select(exists().where(Lesson.course_id == course.id)))
        if not has_lesson:
            raise InvalidTransition("Add at least one module with a lesson in it before publishing: "
                                    "students would find nothing to study.")
        if course.published_at is None:
            course.published_at = utcnow()
    course.status = target
    db.session.flush()
    forget_catalog_facets()  # the catalog's choices and counts are of published courses
    return course


# ---------------------------------------------------------------- modules


def _clean_module(fields: dict) -> dict:
    return {
        "title": _line(fields.get("title"), field="title", label="module title", min_len=TITLE_MIN,
                       max_len=TITLE_MAX),
        "summary": _line(fields.get("summary"), field="summary", label="summary", max_len=SUMMARY_MAX),
        "requires_previous": bool(fields.get("requires_previous")),
    }


def add_module(actor: User, course_id: uuid.UUID, **fields) -> Module:
    """A module at the end of the course. ``fields``: title, summary, requires_previous."""
    course = course_for(actor, course_id, what="add modules to this course", lock=True)
    values = _clean_module(fields)
    count = db.session.scalar(select(func.count()).select_from(Module).where(Module.course_id == course.id))
    if count >= MAX_MODULES:
        raise InvalidInput(f"A course holds at most {MAX_MODULES} modules.", field="title")
    module = Module(course_id=course.id, position=count + 1, **values)
    db.session.add(module)
    db.session.flush()
    return module


def update_module(actor: User, module_id: uuid.UUID, **fields) -> Module:
    module, _course = _module_for(actor, module_id, lock=False)
    for name, value in _clean_module(fields).items():
        setattr(module, name, value)
    db.session.flush()
    return module


def set_requires_previous(actor: User, module_id: uuid.UUID, value: bool) -> Module:
    module, _course = _module_for(actor, module_id, lock=False)
    module.requires_previous = bool(value)
    db.session.flush()
    return module


def _refuse_if_studied(condition, what: str) -> None:
    """Work students did is not thrown away by an edit: a module or lesson someone has opened
    stays (its text can still change)."""
    if db.session.scalar(select(exists().where(condition))):
        raise Conflict(f"Students have already worked on this {what}, so it cannot be deleted. "
                       "Edit it instead.")


def delete_module(actor: User, module_id: uuid.UUID) -> Course:
    """Delete a module and its lessons; the modules after it move up one place."""
    module, course = _module_for(actor, module_id)
    _refuse_if_studied(Progress.lesson_id.in_(select(Lesson.id).where(Lesson.module_id == module.id)), "module")
    for lesson in db.session.scalars(select(Lesson).where(Lesson.module_id == module.id)).all():
        events.lesson_changed.send(lesson=lesson, change="deleted")
    position = module.position
    db.session.delete(module)
    db.session.flush()
    db.session.execute(
        update(Module).where(Module.course_id == course.id, Module.position > position)
        .values(position=Module.position - 1).execution_options(synchronize_session="fetch")
    )
    return course


def move_module(actor: User, module_id: uuid.UUID, direction: str) -> Module:
    """Swap the module with its neighbour above (``up``) or below (``down``); at either end
    nothing changes."""
    step = _step(direction)
    module, course = _module_for(actor, module_id)
    neighbour = db.session.scalar(
        select(Module).where(Module.course_id == course.id, Module.position == module.position + step)
    )
    if neighbour is not None:
        module.position, neighbour.position = neighbour.position, module.position
        db.session.flush()
    return module


def _step(direction: str) -> int:
    if direction == "up":
        return -1
    if direction == "down":
        return 1
    raise InvalidInput("Choose to move up or down.")


# ---------------------------------------------------------------- lessons


def _clean_lesson(fields: dict) -> dict:
    return {
        "title": _line(fields.get("title"), field="title", label="lesson title", min_len=TITLE_MIN,
                       max_len=TITLE_MAX),
        "body": _text(fields.get("body"), field="body", label="lesson text", max_len=TEXT_MAX),
        "estimated_minutes": _bounded_int(fields.get("estimated_minutes"), field="estimated_minutes",
                                          label="estimated minutes", low=MINUTES_MIN, high=MINUTES_MAX),
    }


def add_lesson(actor: User, module_id: uuid.UUID, **fields) -> Lesson:
    """A lesson at the end of the module. ``fields``: title, body (Markdown), estimated_minutes."""
    module, course = _module_for(actor, module_id)
    values = _clean_lesson(fields)
    count = db.session.scalar(select(func.count()).select_from(Lesson).where(Lesson.module_id == module.id))
    if count >= MAX_LESSONS:
        raise InvalidInput(f"A module holds at most {MAX_LESSONS} lessons; start a new module.", field="title")
    lesson = Lesson(module_id=module.id, course_id=course.id, position=count + 1, **values)
    db.session.add(lesson)
    db.session.flush()
    events.lesson_changed.send(lesson=lesson, change="saved")
    return lesson


def update_lesson(actor: User, lesson_id: uuid.UUID, **fields) -> Lesson:
    lesson, _course = _lesson_for(actor, lesson_id, lock=False)
    for name, value in _clean_lesson(fields).items():
        setattr(lesson, name, value)
    db.session.flush()
    events.lesson_changed.send(lesson=lesson, change="saved")
    return lesson


def delete_lesson(actor: User, lesson_id: uuid.UUID) -> Course:
    """Delete a lesson; the lessons after it in its module move up one place."""
    lesson, course = _lesson_for(actor, lesson_id)
    _refuse_if_studied(Progress.lesson_id == lesson.id, "lesson")
    events.lesson_changed.send(lesson=lesson, change="deleted")
    module_id, position = lesson.module_id, lesson.position
    db.session.delete(lesson)
    db.session.flush()
    db.session.execute(
        update(Lesson).where(Lesson.module_id == module_id, Lesson.position > position)
        .values(position=Lesson.position - 1).execution_options(synchronize_session="fetch")
    )
    return course


def move_lesson(actor: User, lesson_id: uuid.UUID, direction: str) -> Lesson:
    """Swap the lesson with its neighbour in the module; at either end nothing changes."""
    step = _step(direction)
    lesson, _course = _lesson_for(actor, lesson_id)
    neighbour = db.session.scalar(
        select(Lesson).where(Lesson.module_id == lesson.module_id, Lesson.position == lesson.position + step)
    )
    if neighbour is not None:
        lesson.position, neighbour.position = neighbour.position, lesson.position
        db.session.flush()
        for moved in (lesson, neighbour):
            events.lesson_changed.send(lesson=moved, change="saved")
    return lesson
