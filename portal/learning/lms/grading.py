"""Grading assignment submissions: rubric scores, late penalties, releasing grades.

A grade is a draft until the assignment's grades are released: the student sees nothing of it
(not the score, not the feedback) before then. Releasing notifies each student, emits
``assignment_graded`` and brings their gradebook row up to date. Every change of a grade is kept
by the audit trigger on ``grades``.

Late penalty: ``percent_per_day x days_late`` percent of the raw score is taken off, but the score
never drops below ``floor_percent`` of the raw score. All in Decimal, rounded half up to cents.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlalchemy import and_, bindparam, func, literal, or_, select
from sqlalchemy.orm import aliased

from portal import events
from portal.accounts.models import User
from portal.db import db
from portal.db.base import utcnow
from portal.errors import DomainError, NotFound
from portal.learning.assessment import gradebook
from portal.learning.education.models import Course
from portal.learning.lms import access
from portal.learning.lms.models import Assignment, CourseManagement, Grade, Submission, SubmissionStatus
from portal.platform.notifications.services import notify

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


def late_penalty(raw_score: Decimal, days_late: int, percent_per_day: Decimal, floor_percent: Decimal) -> Decimal:
    """Points taken off ``raw_score`` for ``days_late`` days."""
    raw_score = Decimal(raw_score)
    if days_late <= 0 or percent_per_day <= 0 or raw_score <= 0:
        return Decimal("0.00")
    penalty = raw_score * Decimal(percent_per_day) * days_late / HUNDRED
    most = raw_score - raw_score * Decimal(floor_percent) / HUNDRED  # the floor's limit
    return min(penalty, most, raw_score).quantize(CENT, rounding=ROUND_HALF_UP)


def rubric_score(rubric: list, chosen: dict) -> Decimal:
    """The points of the levels chosen (``{criterion_id: level_id}``); unknown ids are refused."""
    by_criterion = {criterion["id"]: {level["id"]: Decimal(level["points"]) for level in criterion["levels"]}
                    for criterion in rubric}
    total = Decimal(0)
    for criterion_id, level_id in chosen.items():
        levels = by_criterion.get(criterion_id)
        if levels is None or level_id not in levels:
            raise DomainError("That rubric level is not part of this assignment's rubric.", field="rubric")
        total += levels[level_id]
    return total.quantize(CENT)


def _submission_for_grading(grader: User, submission_id: uuid.UUID) -> tuple[Submission, Assignment]:
    row = db.session.execute(
        select(Submission, Assignment).join(Assignment, Assignment.id == Submission.assignment_id)
        .where(Submission.id == submission_id)
    ).first()
    if row is None:
        raise NotFound("That submission does not exist.")
    access.require(grader, row[1].course_id, access.CAN_GRADE, "grade this course's work")
    return row[0], row[1]


def parse_score(value) -> Decimal:
    try:
        score = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise DomainError("The score must be a number.", field="raw_score") from exc
    if not score.is_finite():
        raise DomainError("The score must be a number.", field="raw_score")
    return score


@dataclass
class GradeChange:
    """What the grading screen sends; ``None`` leaves a part as it is."""

    rubric_levels: dict | None = None  #: {criterion_id: level_id}, merged into the chosen ones
    raw_score: Decimal | None = None  #: only without a rubric
    feedback: str | None = None


def grade_submission(grader: User, submission_id: uuid.UUID, change: GradeChange) -> Grade:
    """Create or update the grade of a submission. With a rubric the raw score is the sum of
    the chosen levels; without one it is entered directly, between 0 and the points. The late
    penalty follows from the submission's ``days_late``."""
    submission, assignment = _submission_for_grading(grader, submission_id)
    grade = db.session.scalar(select(Grade).where(Grade.submission_id == submission.id))
    levels = dict(grade.rubric_levels) if grade is not None else {}
    if assignment.rubric:
        if change.raw_score is not None:
            raise DomainError("This assignment has a rubric: choose a level for each criterion.", field="raw_score")
        if change.rubric_levels:
            levels.update({str(k): str(v) for k, v in change.rubric_levels.items()})
        raw = rubric_score(assignment.rubric, levels)
    else:
        if change.rubric_levels:
            raise DomainError("This assignment has no rubric.", field="rubric")
        if change.raw_score is not None:
            raw = change.raw_score
        elif grade is not None:
            raw = grade.raw_score
        else:
            raise DomainError("Enter a score.", field="raw_score")
    if raw < 0:
        raise DomainError("The score cannot be negative.", field="raw_score")
    if raw > assignment.points:
        raise DomainError(f"The score cannot be above the assignment's {assignment.points} points.",
                          field="raw_score")
    raw = raw.quantize(CENT, rounding=ROUND_HALF_UP)
    penalty = late_penalty(raw, submission.days_late, assignment.late_penalty_percent_per_day,
                           assignment.late_penalty_floor_percent)
    if grade is None:
        grade = Grade(submission_id=submission.id, assignment_id=assignment.id, user_id=submission.user_id,
                      feedback="")
        db.session.add(grade)
    grade.grader_id = grader.id
    grade.rubric_levels = levels
    grade.raw_score = raw
    grade.penalty = penalty
    grade.score = raw - penalty
    if change.feedback is not None:
        if len(change.feedback) > 20_000:
            raise DomainError("Feedback is at most 20,000 characters.", field="feedback")
        grade.feedback = change.feedback.strip()
    if submission.status == SubmissionStatus.SUBMITTED and grade.released_at is None:
        submission.status = SubmissionStatus.GRADED
    db.session.flush()
    if grade.released_at is not None:
        # Already visible to the student: keep their overall grade in step with the change.
        gradebook.recompute(assignment.course_id, submission.user_id)
    return grade


def is_complete(assignment: Assignment, grade: Grade | None) -> bool:
    """Whether a grade is ready to release: with a rubric, every criterion has a level."""
    if grade is None:
        return False
    if assignment.rubric:
        return all(criterion["id"] in grade.rubric_levels for criterion in assignment.rubric)
    return True


def release_grades(actor: User, assignment_id: uuid.UUID, link_for=None) -> int:
    """Make every complete, unreleased grade of the assignment visible to its student; notify
    them, emit ``assignment_graded`` and recompute their gradebook row. Returns how many.

    ``link_for(assignment)`` gives the link the notification carries (the view knows URLs)."""
    assignment = db.session.get(Assignment, assignment_id)
    if assignment is None:
        raise NotFound("That assignment does not exist.")
    access.require(actor, assignment.course_id, access.CAN_RELEASE, "release grades in this course")
    rows = db.session.execute(
        select(Grade, Submission).join(Submission, Submission.id == Grade.submission_id)
        .where(Grade.assignment_id == assignment.id, Grade.released_at.is_(None))
        .with_for_update(of=Grade)
    ).all()
    now = utcnow()
    released = 0
    link = link_for(assignment) if link_for else None
    for grade, submission in rows:
        if not is_complete(assignment, grade):
            continue
        grade.released_at = now
        submission.status = SubmissionStatus.RELEASED
        released += 1
        notify(submission.user_id, "grade_released", f"Your grade for \u201c{assignment.title}\u201d is out",
               f"{grade.score} of {assignment.points} points.", link)
    db.session.flush()
    for grade, submission in rows:
        if grade.released_at == now:
            student = db.session.get(User, submission.user_id)
            events.assignment_graded.send(user=student, submission=submission, grade=grade)
            gradebook.recompute(assignment.course_id, submission.user_id)
    return released


# ---------------------------------------------------------------------------------- queue


def assignment_to_grade(grader: User, assignment_id: uuid.UUID) -> tuple[Assignment, Course]:
    """The assignment and its course for the grading screen, with the grader's role on the
    course's staff, in one statement; NotFound, or Forbidden unless the grader may grade it."""
    row = db.session.execute(_ASSIGNMENT_TO_GRADE, {"assignment": assignment_id, "user": grader.id}).first()
    if row is None:
        raise NotFound("That assignment does not exist.")
    assignment, course, role = row
    access.remember_management_role(grader, course.id, role)
    access.require(grader, course.id, access.CAN_GRADE, "grade this course's work")
    return assignment, course


_ASSIGNMENT_TO_GRADE = (
    select(Assignment, Course, CourseManagement.role)
    .join(Course, Course.id == Assignment.course_id)
    .outerjoin(CourseManagement, and_(CourseManagement.course_id == Course.id,
                                      CourseManagement.user_id == bindparam("user")))
    .where(Assignment.id == bindparam("assignment"))
)


@dataclass
class GradingPanel:
    """What the grading panel shows around one submission (or none): the submission, its grade
    and its student's name, the submissions waiting before and after it (by time handed in),
    the first one waiting, and the assignment's submissions by status."""

    submission: Submission | None
    grade: Grade | None
    student_name: str | None
    prev_id: uuid.UUID | None
    next_id: uuid.UUID | None
    first_waiting_id: uuid.UUID | None
    counts: dict


def _grading_panel_statement(first_waiting: bool):
    waiting = and_(_Waiting.assignment_id == bindparam("assignment"), _Waiting.status == SubmissionStatus.SUBMITTED)
    first = (select(_Waiting.id).where(waiting).order_by(_Waiting.submitted_at, _Waiting.id).limit(1)
             .scalar_subquery())
    key, current = (_Waiting.submitted_at, _Waiting.id), (Submission.submitted_at, Submission.id)
    before = or_(key[0] < current[0], and_(key[0] == current[0], key[1] < current[1]))
    after = or_(key[0] > current[0], and_(key[0] == current[0], key[1] > current[1]))
    prev_id = (select(_Waiting.id).where(waiting, before)
               .order_by(_Waiting.submitted_at.desc(), _Waiting.id.desc()).limit(1)
               .correlate(Submission).scalar_subquery())
    next_id = (select(_Waiting.id).where(waiting, after).order_by(_Waiting.submitted_at, _Waiting.id).limit(1)
               .correlate(Submission).scalar_subquery())
    by_status = (select(_Counted.status, func.count().label("n"))
                 .where(_Counted.assignment_id == bindparam("assignment"))
                 .group_by(_Counted.status).subquery("by_status"))
    counts = select(func.json_object_agg(by_status.c.status, by_status.c.n)).scalar_subquery()
    one_row = select(literal(1).label("one")).subquery("one_row")
    chosen = first if first_waiting else bindparam("submission")
    return (
        select(Submission, Grade, User.full_name, prev_id, next_id, first, counts)
        .select_from(one_row)
        .outerjoin(Submission, and_(Submission.id == chosen, Submission.assignment_id == bindparam("assignment")))
        .outerjoin(Grade, Grade.submission_id == Submission.id)
        .outerjoin(User, User.id == Submission.user_id)
    )


_Waiting = aliased(Submission, name="waiting")
_Counted = aliased(Submission, name="counted")
#: The grading panel's statement: the submission asked for (or the first one waiting), its grade
#: and student, its neighbours among those waiting, the first one waiting and the counts by
#: status, in one statement (one row, NULLs where there is no submission).
_GRADING_PANEL = {first: _grading_panel_statement(first) for first in (False, True)}


def grading_panel(assignment_id: uuid.UUID, submission_id: uuid.UUID | None = None, *,
                  first_waiting: bool = False) -> GradingPanel:
    """The grading panel around ``submission_id`` (None when it is not one of the assignment's),
    or with ``first_waiting`` around the first submission waiting for a grade. One statement.
    Without a submission the panel's "next" is the first one waiting."""
    row = db.session.execute(_GRADING_PANEL[first_waiting],
                             {"assignment": assignment_id, "submission": submission_id}).one()
    submission, grade, student_name, prev_id, next_id, first, raw_counts = row
    counts = {status: 0 for status in SubmissionStatus}
    counts.update({SubmissionStatus(status): n for status, n in (raw_counts or {}).items()})
    if submission is None:
        prev_id, next_id = None, first
    return GradingPanel(submission, grade, student_name, prev_id, next_id, first, counts)


def queue_counts(assignment_id: uuid.UUID) -> dict:
    """Submissions by status for one assignment (one query)."""
    rows = db.session.execute(
        select(Submission.status, func.count()).where(Submission.assignment_id == assignment_id)
        .group_by(Submission.status)
    ).all()
    counts = {status: 0 for status in SubmissionStatus}
    counts.update(dict(rows))
    return counts
