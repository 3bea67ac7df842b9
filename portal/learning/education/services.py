"""Studying a course: enrol and leave, open lessons, mark them complete, complete the course,
and the achievements earned on the way.

Rules, in one place:

- Only students enrol, and only in published courses. Leaving keeps the student's progress;
  enrolling again picks it up where they left it. A completed course cannot be left.
- Lessons open to enrolled students (and, as a preview that records nothing, to the course's
  staff and admins). A module that requires the previous one stays locked until every lesson
  of the previous module is completed and every published quiz of it passed.
- Completing a lesson is idempotent: the first time records it, recomputes the enrolment's
  progress, emits ``lesson_completed`` and checks the course's completion rules; later times
  change nothing and emit nothing.
- A course is completed when its rules hold (all lessons, every published quiz passed, a
  submission for every published assignment, as the course asks); the enrolment is then
  marked completed once, ``course_completed`` emitted and the student notified.
- Achievements are inserted with ``ON CONFLICT DO NOTHING`` against the unique
  (user, kind, course) constraint, so each is earned exactly once even under races.

Services take the acting user, validate, change rows and flush; the caller commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select, update
from sqlalchemy.dialects.postgresql import insert

from portal import events
from portal.accounts.models import Role, User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import Conflict, Forbidden, NotFound
from portal.learning.assessment.models import Quiz, QuizAttempt
from portal.learning.education import queries
from portal.learning.education.models import (
    ENROLLMENT_TRANSITIONS,
    Achievement,
    AchievementKind,
    Course,
    CourseStatus,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    Progress,
)
from portal.learning.lms.models import Assignment, Submission
from portal.platform.notifications.services import notify

#: Days in a row with a completed lesson that earn ``streak_7``.
STREAK_DAYS = 7
#: Viewing the lesson the enrolment already points at again within this long writes nothing:
#: a reload or a back-and-forth would otherwise update the enrolment (and its audit row) on
#: every view, for a "last activity" that only orders the dashboard's courses.
ACTIVITY_RESOLUTION = timedelta(minutes=1)


class PaymentRequired(Conflict):
    """A paid course entered without its purchase."""

    status_code = 402


def _move(enrollment: Enrollment, to: EnrollmentStatus) -> None:
    if to not in ENROLLMENT_TRANSITIONS[enrollment.status]:
        raise Conflict(f"An enrolment that is {enrollment.status.value} cannot become {to.value}.")
    enrollment.status = to


def _published_course(course_id: uuid.UUID) -> Course:
    course = db.session.get(Course, course_id)
    if course is None or course.status != CourseStatus.PUBLISHED:
        raise NotFound("That course is not open for enrolment.")
    return course


# --------------------------------------------------------------------------- enrol and leave


def enrol(user: User, course_id: uuid.UUID, *, paid: bool = False) -> Enrollment:
    """Enrol ``user`` in a published course, or enrol them again after they left.

    Enrolling twice is harmless: an active or completed enrolment is returned unchanged. A
    course with a price is entered only through its purchase (``paid=True``, given by the
    payments services once the price is paid or owned): a new enrolment, or a return after
    leaving, is refused otherwise."""
    if user.role != Role.STUDENT:
        raise Forbidden("Only students enrol in courses.")
    course = _published_course(course_id)
    if course.is_paid and not paid:
        current = db.session.scalar(select(Enrollment.status).where(Enrollment.course_id == course.id,
                                                                    Enrollment.user_id == user.id))
        if current in (None, EnrollmentStatus.LEFT):
            raise PaymentRequired("This course has a price: buy it from its page to enrol.")
    now = utcnow()
    enrollment = db.session.scalar(
        select(Enrollment).where(Enrollment.course_id == course.id, Enrollment.user_id == user.id).with_for_update()
    )
    if enrollment is None:
        # Two clicks at once: the unique (course, user) pair lets one insert win; the other
        # then reads the winner's row.
        db.session.execute(
            insert(Enrollment)
            .values(id=uuid.uuid4(), course_id=course.id, user_id=user.id, status=EnrollmentStatus.ACTIVE,
                    progress_percent=0, last_activity_at=now, created_at=now, updated_at=now)
            .on_conflict_do_nothing(constraint="uq_enrollments_courseId_userId")
        )
        enrollment = db.session.scalar(
            select(Enrollment).where(Enrollment.course_id == course.id, Enrollment.user_id == user.id)
            .execution_options(populate_existing=True)
        )
        events.enrolled.send(user=user, course=course)
        return enrollment
    if enrollment.status == EnrollmentStatus.LEFT:
        _move(enrollment, EnrollmentStatus.ACTIVE)
        enrollment.left_at = None
        enrollment.last_activity_at = now
        enrollment.progress_percent = _progress_percent(user.id, course.id)
        db.session.flush()
        events.enrolled.send(user=user, course=course)
    return enrollment


def leave(user: User, course_id: uuid.UUID) -> Enrollment:
    """Leave a course the student is active in. Their progress is kept for a later return."""
    enrollment = db.session.scalar(
        select(Enrollment).where(Enrollment.course_id == course_id, Enrollment.user_id == user.id).with_for_update()
    )
    if enrollment is None or enrollment.status == EnrollmentStatus.LEFT:
        raise Conflict("You are not enrolled in this course.")
    if enrollment.status == EnrollmentStatus.COMPLETED:
        raise Conflict("You have completed this course; it stays on your record and cannot be left.")
    _move(enrollment, EnrollmentStatus.LEFT)
    enrollment.left_at = utcnow()
    db.session.flush()
    return enrollment


# --------------------------------------------------------------------------- lessons


@dataclass
class LessonAccess:
    """What opening a lesson found: the course outline as the reader sees it, the lesson and
    its module in it, and whether this is a staff preview (which records nothing)."""

    outline: queries.Outline
    lesson: queries.LessonItem
    module: queries.ModuleItem
    preview: bool


def _locked_message(outline: queries.Outline, module: queries.ModuleItem) -> str:
    previous = outline.previous_module(module)
    name = f"“{previous.title}”" if previous else "the previous module"
    return (f"“{module.title}” opens once you have passed {name}: complete all its lessons "
            "and pass its quizzes.")


def check_lesson_access(user: User, lesson_id: uuid.UUID, outline: queries.Outline | None = None) -> LessonAccess:
    """May ``user`` open the lesson: enrolled (active or completed) in the published course and
    the lesson's module not locked; or on the course's staff or an admin (a preview)."""
    if outline is None:
        course_id = db.session.scalar(select(Lesson.course_id).where(Lesson.id == lesson_id))
        if course_id is None:
            raise NotFound("There is no such lesson.")
        outline = queries.load_outline(user, course_id=course_id)
    found = outline.find(lesson_id)
    if found is None:
        raise NotFound("There is no such lesson in this course.")
    lesson, module = found
    if outline.is_staff:
        return LessonAccess(outline, lesson, module, preview=True)
    if user.role != Role.STUDENT:
        raise Forbidden("Lessons open to the course's students and its staff.")
    if not outline.is_enrolled:
        raise Forbidden(f"Enrol in “{outline.course.title}” to open its lessons.")
    if module.locked:
        raise Conflict(_locked_message(outline, module))
    return LessonAccess(outline, lesson, module, preview=False)


def view_lesson(user: User, lesson_id: uuid.UUID, outline: queries.Outline | None = None) -> LessonAccess:
    """Open a lesson: check access, record the first view and remember it as the place to
    continue from. Staff previews record nothing."""
    access = check_lesson_access(user, lesson_id, outline)
    if access.preview:
        return access
    now = utcnow()
    if not access.lesson.viewed:
        db.session.execute(
            insert(Progress)
            .values(id=uuid.uuid4(), user_id=user.id, lesson_id=lesson_id, course_id=access.outline.course.id,
                    first_viewed_at=now, created_at=now, updated_at=now)
            .on_conflict_do_nothing(constraint="uq_progress_userId_lessonId")
        )
        access.lesson.viewed = True
    enrollment = access.outline.enrollment
    if (enrollment.last_lesson_id != lesson_id or enrollment.last_activity_at is None
            or now - enrollment.last_activity_at >= ACTIVITY_RESOLUTION):
        enrollment.last_lesson_id = lesson_id
        enrollment.last_activity_at = now
        db.session.flush()
    return access


@dataclass
class CompletionResult:
    enrollment: Enrollment
    #: False when the lesson had been completed before (nothing changed).
    newly_completed: bool
    #: True when this completion completed the course.
    course_completed: bool


def complete_lesson(user: User, lesson_id: uuid.UUID, outline: queries.Outline | None = None) -> CompletionResult:
    """Mark a lesson complete (idempotent). The first time: progress recomputed,
    ``lesson_completed`` emitted, achievements checked and the course's completion rules."""
    access = check_lesson_access(user, lesson_id, outline)
    if access.preview:
        raise Forbidden("Only enrolled students mark lessons complete; this is a preview.")
    outline = access.outline
    course, enrollment = outline.course, outline.enrollment
    now = utcnow()
    if not access.lesson.viewed:
        db.session.execute(
            insert(Progress)
            .values(id=uuid.uuid4(), user_id=user.id, lesson_id=lesson_id, course_id=course.id,
                    first_viewed_at=now, created_at=now, updated_at=now)
            .on_conflict_do_nothing(constraint="uq_progress_userId_lessonId")
        )
    # Only the statement that turns completedAt from NULL to a time counts: of two concurrent
    # clicks, the second waits on the row lock, re-checks and changes nothing.
    changed = db.session.execute(
        update(Progress)
        .where(Progress.user_id == user.id, Progress.lesson_id == lesson_id, Progress.completed_at.is_(None))
        .values(completed_at=now, updated_at=now)
        .returning(Progress.id)
        .execution_options(synchronize_session=False)
    ).first()
    enrollment.last_lesson_id = lesson_id
    enrollment.last_activity_at = now
    if changed is None:
        db.session.flush()
        return CompletionResult(enrollment, newly_completed=False, course_completed=False)

    access.lesson.completed = True
    access.lesson.viewed = True
    total = outline.total_lessons
    done = outline.completed_lessons
    enrollment.progress_percent = min(100, done * 100 // total) if total else 0
    db.session.flush()
    events.lesson_completed.send(user=user, lesson=db.session.get(Lesson, lesson_id))
    award(user, AchievementKind.FIRST_LESSON, "First lesson completed", now=now)
    if _has_streak(user.id, now):
        award(user, AchievementKind.STREAK_7, f"{STREAK_DAYS}-day learning streak", now=now)
    completed = _complete_if_done(user, course, enrollment, lessons_done=(done == total), now=now)
    return CompletionResult(enrollment, newly_completed=True, course_completed=completed)


def _progress_percent(user_id: uuid.UUID, course_id: uuid.UUID) -> int:
    """Completed lessons out of the course's lessons, 0 to 100 (one statement)."""
    total, done = db.session.execute(
        select(
            select(func.count()).select_from(Lesson).where(Lesson.course_id == course_id).scalar_subquery(),
            select(func.count()).select_from(Progress).join(Lesson, Lesson.id == Progress.lesson_id)
            .where(Progress.user_id == user_id, Lesson.course_id == course_id, Progress.completed_at.is_not(None))
            .scalar_subquery(),
        )
    ).one()
    return min(100, done * 100 // total) if total else 0


def _has_streak(user_id: uuid.UUID, now: datetime) -> bool:
    """A lesson completed on each of the last ``STREAK_DAYS`` calendar days (UTC), today included."""
    since = datetime.combine(now.date() - timedelta(days=STREAK_DAYS - 1), datetime.min.time(), tzinfo=now.tzinfo)
    day = func.date(func.timezone("UTC", Progress.completed_at))
    days = db.session.scalar(
        select(func.count(day.distinct())).where(
            Progress.user_id == user_id, Progress.completed_at >= since, Progress.completed_at <= now
        )
    )
    return days >= STREAK_DAYS


# --------------------------------------------------------------------------- course completion


def _unmet_rules(user_id: uuid.UUID, course: Course, lessons_done: bool | None) -> list[str]:
    """The course's completion rules the student does not meet yet (empty: completed)."""
    unmet = []
    if course.requires_all_lessons:
        if lessons_done is None:
            lessons_done = not db.session.scalar(
                select(exists().where(
                    Lesson.course_id == course.id,
                    ~exists().where(Progress.lesson_id == Lesson.id, Progress.user_id == user_id,
                                    Progress.completed_at.is_not(None)),
                ))
            )
        if not lessons_done:
            unmet.append("lessons")
    checks = []
    if course.requires_quizzes_passed:
        checks.append(("quizzes", exists().where(
            Quiz.course_id == course.id, Quiz.published.is_(True),
            ~exists().where(QuizAttempt.quiz_id == Quiz.id, QuizAttempt.user_id == user_id,
                            QuizAttempt.passed.is_(True)),
        )))
    if course.requires_assignments_submitted:
        checks.append(("assignments", exists().where(
            Assignment.course_id == course.id, Assignment.published.is_(True),
            ~exists().where(Submission.assignment_id == Assignment.id, Submission.user_id == user_id),
        )))
    if checks:
        missing = db.session.execute(select(*(check for _, check in checks))).one()
        unmet.extend(name for (name, _), is_missing in zip(checks, missing, strict=True) if is_missing)
    return unmet


def _complete_if_done(user: User, course: Course, enrollment: Enrollment, *, lessons_done: bool | None = None,
                      now: datetime | None = None) -> bool:
    if enrollment.status != EnrollmentStatus.ACTIVE or _unmet_rules(user.id, course, lessons_done):
        return False
    now = now or utcnow()
    _move(enrollment, EnrollmentStatus.COMPLETED)
    enrollment.completed_at = now
    enrollment.last_activity_at = now
    db.session.flush()
    events.course_completed.send(user=user, course=course)
    notify(user.id, "course_completed", f"You completed {course.title}",
           "Well done: every requirement of the course is met.", queries.course_path(course))
    award(user, AchievementKind.COURSE_COMPLETED, f"Completed {course.title}", course_id=course.id, now=now)
    return True


def check_course_completion(user: User, course_id: uuid.UUID) -> bool:
    """Complete the student's enrolment in the course if its rules now hold (call after a quiz
    is passed or an assignment submitted). Returns True when this call completed it."""
    enrollment = db.session.scalar(
        select(Enrollment).where(Enrollment.course_id == course_id, Enrollment.user_id == user.id).with_for_update()
    )
    if enrollment is None or enrollment.status != EnrollmentStatus.ACTIVE:
        return False
    course = db.session.get(Course, course_id)
    return _complete_if_done(user, course, enrollment)


# --------------------------------------------------------------------------- achievements


def award(user: User, kind: AchievementKind, title: str, *, course_id: uuid.UUID | None = None,
          now: datetime | None = None) -> bool:
    """Give ``user`` an achievement unless they have it already; True when it is new. The
    student is notified of a new one."""
    now = now or utcnow()
    inserted = db.session.execute(
        insert(Achievement)
        .values(id=uuid.uuid4(), user_id=user.id, kind=kind, course_id=course_id, title=title[:160],
                earned_at=now, created_at=now, updated_at=now)
        .on_conflict_do_nothing(constraint="uq_achievements_userId_kind_courseId")
        .returning(Achievement.id)
    ).first() is not None
    if inserted:
        notify(user.id, "achievement", f"Achievement: {title}"[:200], None, "/dashboard")
    return inserted
