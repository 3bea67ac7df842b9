"""Reads for the earnings pages: a student's earnings and their progress toward each active
milestone, the milestones a manager looks after, the earnings admins review; and the learning
streak the streak milestones count.

Each page reads a fixed number of statements whatever the data: progress toward every milestone
comes from three grouped reads (the student's enrolments, their best passed score per quiz and
their days of activity), never one per milestone.
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import (
    Date,
    DateTime,
    Row,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import aliased

from portal.accounts.models import Role, User
from portal.db import db
from portal.learning.assessment.models import Quiz, QuizAttempt
from portal.learning.education.models import Course, Enrollment, EnrollmentStatus, Progress
from portal.learning.lms import access
from portal.learning.lms.models import CourseManagement
from portal.money.currency import CURRENCIES
from portal.money.earnings.models import Earning, EarningStatus, Milestone, MilestoneKind
from portal.money.wallets.models import Transaction
from portal.money.wallets.queries import beside_first_row
from portal.pagination import decode_cursor, encode_cursor

PAGE_SIZE = 25
_EARNINGS, _MILESTONES, _TRANSACTIONS = Earning.__table__, Milestone.__table__, Transaction.__table__
_COURSES, _QUIZZES, _ENROLLMENTS = Course.__table__, Quiz.__table__, Enrollment.__table__
_ATTEMPTS, _PROGRESS = QuizAttempt.__table__, Progress.__table__
#: Active milestones shown with progress on a student's page (the most relevant first).
PROGRESS_LIMIT = 60


def percent_text(value: Decimal | None) -> str:
    """``80%``, ``72.5%``."""
    if value is None:
        return "—"
    text = f"{Decimal(value).quantize(Decimal('0.01')):f}".rstrip("0").rstrip(".")
    return f"{text}%"


# ------------------------------------------------------------------------------ streaks


def activity_days(user_id: uuid.UUID, *, since: date, until: date) -> dict[uuid.UUID, set[date]]:
    """The UTC days from ``since`` to ``until`` on which the student completed a lesson, per
    course (one statement). A learning day is a day with a completed lesson, as the learning
    area's own streak achievement counts it."""
    day = func.date(func.timezone("UTC", Progress.completed_at))
    start = datetime.combine(since, datetime.min.time()).replace(tzinfo=UTC)
    end = datetime.combine(until + timedelta(days=1), datetime.min.time()).replace(tzinfo=UTC)
    rows = db.session.execute(
        select(Progress.course_id, day).distinct()
        .where(Progress.user_id == user_id, Progress.completed_at >= start, Progress.completed_at < end))
    days: dict[uuid.UUID, set[date]] = defaultdict(set)
    for course_id, on in rows:
        days[course_id].add(on)
    return dict(days)


def streak_length(days: set[date], today: date, *, alive_from_yesterday: bool = False) -> int:
    """Days in a row with activity ending ``today``; with ``alive_from_yesterday``, a streak
    that ended yesterday still counts (the student can keep it going today)."""
    current = today
    if current not in days and alive_from_yesterday:
        current = today - timedelta(days=1)
    length = 0
    while current in days:
        length += 1
        current -= timedelta(days=1)
    return length


# ------------------------------------------------------------------------------ describing rules


def describe(kind: MilestoneKind, *, course_title: str | None, quiz_title: str | None, min_score: Decimal | None,
             streak_days: int | None) -> str:
    """The rule in words: "Pass “Budgets” with at least 80%", "Complete any course"."""
    if kind == MilestoneKind.COURSE_COMPLETED:
        return f"Complete \u201c{course_title}\u201d" if course_title else "Complete any course"
    if kind == MilestoneKind.QUIZ_PASSED:
        if quiz_title:
            what = f"Pass the quiz \u201c{quiz_title}\u201d"
        elif course_title:
            what = f"Pass any quiz of \u201c{course_title}\u201d"
        else:
            what = "Pass any quiz"
        return what + (f" with at least {percent_text(min_score)}" if min_score is not None else "")
    where = f" in \u201c{course_title}\u201d" if course_title else ""
    return f"Complete lessons{where} on {streak_days} days in a row (UTC)"


# ------------------------------------------------------------------------------ keyset pages


@dataclass
class Page:
    items: list
    next_cursor: str | None = None

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None


def _keyset(stmt: Select, created_col, id_col, cursor: str | None, size: int, key) -> Page:
    """Rows of ``stmt`` newest first after ``cursor``; ``key(row)`` gives (createdAt, id)."""
    position = decode_cursor(cursor)
    if position is not None:
        stmt = stmt.where(tuple_(created_col, id_col) < tuple_(*position))
    rows = list(db.session.execute(stmt.order_by(created_col.desc(), id_col.desc()).limit(size + 1)))
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = encode_cursor(*key(rows[-1]))
    return Page(rows, next_cursor)


# ------------------------------------------------------------------------------ the student's page


@dataclass
class EarningRow:
    #: The earning's columns the page shows: ``id``, ``created_at``, ``source``, ``source_ref``,
    #: ``amount``, ``currency``, ``status`` (a row of them, not the entity).
    earning: Row
    milestone_title: str
    #: The reversing transaction's description (with the admin's reason), when reversed.
    reversal_note: str | None


@dataclass
class Total:
    currency: str
    credited: Decimal = Decimal(0)
    pending: Decimal = Decimal(0)
    reversed: Decimal = Decimal(0)


@dataclass
class MilestoneProgress:
    """How far a student is toward one milestone."""

    #: The milestone's columns the page and the measure read: ``id``, ``title``,
    #: ``description``, ``kind``, ``course_id``, ``quiz_id``, ``min_score``, ``streak_days``,
    #: ``reward_amount``, ``reward_currency`` (a row of them, not the entity).
    milestone: Row
    rule: str
    course_title: str | None
    #: ``credited``, ``pending`` or ``reversed`` when earned, else None.
    earned: EarningStatus | None
    value: Decimal = Decimal(0)
    target: Decimal = Decimal(1)
    #: What the numbers mean, e.g. "Best score 72% of 80% needed".
    label: str = ""

    @property
    def done(self) -> bool:
        return self.earned is not None or self.value >= self.target

    @property
    def bar_value(self) -> Decimal:
        return min(self.value, self.target)


@dataclass
class StudentEarnings:
    rows: Page
    totals: list[Total]
    progress: list[MilestoneProgress] = field(default_factory=list)
    streak: int = 0


#: Made once: an alias adapts each column the first time it is used and keeps the result
#: (a new alias per call cost milliseconds of Python per page).
_REVERSAL = aliased(Transaction, name="reversal")


def _reversal_join():
    return _REVERSAL, and_(_REVERSAL.reverses_id == Earning.transaction_id, Earning.status == EarningStatus.REVERSED)


@functools.cache
def _earnings_page_statement(after: bool) -> Select:
    """A page of the student's earnings, newest first, with the sums per currency and status
    beside the first row; built once (parameters ``user_id``, ``limit``, and ``after_at`` and
    ``after_id`` with ``after``)."""
    e, m = _EARNINGS, _MILESTONES
    reversal = _TRANSACTIONS.alias("reversal")
    order = (e.c.createdAt.desc(), e.c.id.desc())
    page = (select(e.c.id, e.c.createdAt.label("created_at"), e.c.source, e.c.source_ref.label("source_ref"),
                   e.c.amount, e.c.currency, e.c.status, m.c.title.label("milestone_title"), reversal.c.description.label("reversal_note"),
                   func.row_number().over(order_by=order).label("position"))
            .join(m, m.c.id == e.c.milestone_id)
            .outerjoin(reversal, and_(reversal.c.reverses_id == e.c.transaction_id,
                                      e.c.status == literal_column(f"'{EarningStatus.REVERSED}'")))
            .where(e.c.user_id == bindparam("user_id")))
    if after:
        page = page.where(tuple_(e.c.createdAt, e.c.id) < tuple_(bindparam("after_at", type_=e.c.createdAt.type),
                                                                bindparam("after_id", type_=e.c.id.type)))
    page = page.order_by(*order).limit(bindparam("limit"))
    sums = (select(e.c.currency, e.c.status, func.sum(e.c.amount).label("total"))
            .where(e.c.user_id == bindparam("user_id")).group_by(e.c.currency, e.c.status).subquery("sums"))
    totals = select(func.array_agg(sums.c.currency).label("total_currencies"),
                    func.array_agg(sums.c.status).label("total_statuses"),
                    func.array_agg(sums.c.total).label("total_amounts"))
    return beside_first_row(page, totals)


def _earnings_rows(user: User, cursor: str | None, size: int) -> tuple[Page, list]:
    """The page of earnings and the first row (with the totals' arrays), in one statement."""
    position = decode_cursor(cursor)
    params = {"user_id": user.id, "limit": size + 1}
    if position is not None:
        params["after_at"], params["after_id"] = position
    rows = db.session.execute(_earnings_page_statement(position is not None), params).all()
    items = [EarningRow(row, row.milestone_title, row.reversal_note) for row in rows if row.id is not None]
    next_cursor = None
    if len(items) > size:
        items = items[:size]
        next_cursor = encode_cursor(items[-1].earning.created_at, items[-1].earning.id)
    return Page(items, next_cursor), rows[0]


def earnings_of(user: User, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """The student's earnings, newest first (one statement)."""
    return _earnings_rows(user, cursor, size)[0]


def _totals(first) -> list[Total]:
    """Sums per currency and status, in the currency table's order, from the arrays on the
    first row of ``_earnings_page_statement``."""
    totals: dict[str, Total] = {}
    for code, status, amount in zip(first.total_currencies or (), first.total_statuses or (),
                                    first.total_amounts or (), strict=True):
        total = totals.setdefault(code, Total(code))
        setattr(total, EarningStatus(status).value, amount)
    return [totals[code] for code in CURRENCIES if code in totals]


@functools.cache
def _progress_statement() -> Select:
    """The active milestones open to the student (``PROGRESS_LIMIT``, unearned first) with
    what their progress is measured from beside the first row: the student's enrolments, their
    best passed score per quiz, and their days with a completed lesson per course (UTC) over
    the longest streak the milestones shown ask for. Built once; parameters ``user_id`` and
    ``today``."""
    m, c, q, e = _MILESTONES, _COURSES, _QUIZZES, _EARNINGS
    user = bindparam("user_id")
    enrolled = select(_ENROLLMENTS.c.course_id).where(_ENROLLMENTS.c.user_id == user,
                                                      _ENROLLMENTS.c.status != literal_column(f"'{EnrollmentStatus.LEFT}'"))
    order = (case((e.c.id.is_(None), 0), else_=1), m.c.kind, m.c.reward_amount.desc(), m.c.id)
    shown = (select(m.c.id, m.c.title, m.c.description, m.c.kind, *(m.c[name].label(name) for name in (
                        "course_id", "quiz_id", "min_score", "streak_days", "reward_amount", "reward_currency")),
                    c.c.title.label("course_title"),
                    q.c.title.label("quiz_title"), e.c.status.label("earned"),
                    func.row_number().over(order_by=order).label("position"))
             .outerjoin(c, c.c.id == m.c.course_id).outerjoin(q, q.c.id == m.c.quiz_id)
             .outerjoin(e, and_(e.c.milestone_id == m.c.id, e.c.user_id == user))
             .where(m.c.active.is_(True), or_(m.c.course_id.is_(None), m.c.course_id.in_(enrolled)))
             .order_by(*order).limit(PROGRESS_LIMIT)).cte("shown")
    en = _ENROLLMENTS
    enrolments = (select(func.array_agg(en.c.course_id).label("enrolment_courses"),
                         func.array_agg(en.c.status).label("enrolment_statuses"),
                         func.array_agg(en.c.progress_percent).label("enrolment_percents"))
                  .where(en.c.user_id == user).subquery("enrolments"))
    qa = _ATTEMPTS
    passed = (select(qa.c.quiz_id, q.c.course_id, func.max(qa.c.percent).label("best"))
              .join(q, q.c.id == qa.c.quiz_id).where(qa.c.user_id == user, qa.c.passed.is_(True))
              .group_by(qa.c.quiz_id, q.c.course_id).subquery("passed"))
    best = select(func.array_agg(passed.c.quiz_id).label("best_quizzes"),
                  func.array_agg(passed.c.course_id).label("best_courses"),
                  func.array_agg(passed.c.best).label("best_percents")).subquery("best")
    longest = (select(func.max(shown.c.streak_days)).where(shown.c.kind == literal_column(f"'{MilestoneKind.STREAK}'"))
               .scalar_subquery())
    today = bindparam("today", type_=Date)
    pr = _PROGRESS
    day = func.date(func.timezone("UTC", pr.c.completed_at))
    active_days = (select(pr.c.course_id, day.label("day")).distinct()
                   .where(pr.c.user_id == user,
                          pr.c.completed_at >= func.timezone("UTC", cast(today - longest, DateTime)),
                          pr.c.completed_at < func.timezone("UTC", cast(today + 1, DateTime)))
                   .subquery("active_days"))
    days = select(func.array_agg(active_days.c.course_id).label("day_courses"),
                  func.array_agg(active_days.c.day).label("days")).subquery("days")
    facts = select(enrolments, best, days).select_from(enrolments.join(best, true()).join(days, true()))
    return beside_first_row(select(shown), facts)


def student_earnings(user: User, today: date, cursor: str | None = None) -> StudentEarnings:
    """Everything the student's earnings page shows, in two statements: the page of earnings
    with the totals, and the milestones with what their progress is measured from."""
    rows, first = _earnings_rows(user, cursor, PAGE_SIZE)
    result = StudentEarnings(rows=rows, totals=_totals(first))
    found = db.session.execute(_progress_statement(), {"user_id": user.id, "today": today}).all()
    facts, shown = found[0], [row for row in found if row.id is not None]
    if not shown:
        return result
    enrolments = {course_id: (EnrollmentStatus(status), percent) for course_id, status, percent in zip(
        facts.enrolment_courses or (), facts.enrolment_statuses or (), facts.enrolment_percents or (), strict=True)}
    best: dict[uuid.UUID, tuple[uuid.UUID, Decimal]] = {
        quiz_id: (course_id, percent) for quiz_id, course_id, percent in zip(
            facts.best_quizzes or (), facts.best_courses or (), facts.best_percents or (), strict=True)}
    days: dict[uuid.UUID, set[date]] = defaultdict(set)
    for course_id, on in zip(facts.day_courses or (), facts.days or (), strict=True):
        days[course_id].add(on)
    days = dict(days)
    every_day = set().union(*days.values()) if days else set()
    result.streak = streak_length(every_day, today, alive_from_yesterday=True)
    for milestone in shown:
        earned = EarningStatus(milestone.earned) if milestone.earned is not None else None
        item = MilestoneProgress(milestone, describe(milestone.kind, course_title=milestone.course_title,
                                                     quiz_title=milestone.quiz_title, min_score=milestone.min_score,
                                                     streak_days=milestone.streak_days),
                                 milestone.course_title, earned)
        _measure(item, enrolments, best, days, every_day, today)
        result.progress.append(item)
    return result


def _measure(item: MilestoneProgress, enrolments, best, days, every_day, today: date) -> None:
    m = item.milestone
    if m.kind == MilestoneKind.COURSE_COMPLETED:
        if m.course_id is None:
            done = sum(1 for status, _ in enrolments.values() if status == EnrollmentStatus.COMPLETED)
            item.value, item.target = Decimal(min(done, 1)), Decimal(1)
            item.label = f"Courses completed: {min(done, 1)} of 1"
        else:
            status, percent = enrolments.get(m.course_id, (None, 0))
            item.value, item.target = Decimal(100 if status == EnrollmentStatus.COMPLETED else percent), Decimal(100)
            item.label = ("Course completed" if status == EnrollmentStatus.COMPLETED
                          else f"Lessons done: {percent}% (the course's other requirements count too)")
    elif m.kind == MilestoneKind.QUIZ_PASSED:
        if m.quiz_id is not None:
            scores = [best[m.quiz_id][1]] if m.quiz_id in best else []
        elif m.course_id is not None:
            scores = [p for course_id, p in best.values() if course_id == m.course_id]
        else:
            scores = [p for _, p in best.values()]
        top = max(scores) if scores else None
        needed = m.min_score
        item.target = Decimal(needed) if needed else Decimal(100)
        if needed is None:
            item.value, item.target = Decimal(1 if top is not None else 0), Decimal(1)
            item.label = f"Passed, best score {percent_text(top)}" if top is not None else "Not passed yet"
        else:
            item.value = Decimal(top or 0)
            item.label = (f"Best passing score {percent_text(top)} of {percent_text(needed)} needed"
                          if top is not None else f"Not passed yet ({percent_text(needed)} needed)")
    else:
        source = every_day if m.course_id is None else days.get(m.course_id, set())
        length = streak_length(source, today, alive_from_yesterday=True)
        item.value, item.target = Decimal(length), Decimal(m.streak_days)
        item.label = f"Current streak: {length} of {m.streak_days} days"


# ------------------------------------------------------------------------------ managers' list


@dataclass
class MilestoneRow:
    #: The milestone, or its columns (``id``, ``created_at``, ``title``, ``description``, ``kind``,
    #: ``course_id``, ``quiz_id``, ``min_score``, ``streak_days``, ``reward_amount``,
    #: ``reward_currency``, ``active``) as the list reads them.
    milestone: Milestone | Row
    course_title: str | None
    quiz_title: str | None
    #: Students who earned it (any status).
    earned: int
    can_edit: bool

    @property
    def rule(self) -> str:
        m = self.milestone
        return describe(m.kind, course_title=self.course_title, quiz_title=self.quiz_title, min_score=m.min_score,
                        streak_days=m.streak_days)


@dataclass
class ManagePage:
    """The milestones page: a page of milestones and the courses a new one may name."""

    rows: Page
    #: (id as text, title), by title.
    courses: list[tuple[str, str]]


@functools.cache
def _manage_page_statement(admin: bool, after: bool) -> Select:
    """Milestones newest first, with the courses a milestone may name beside the first row, as
    arrays; built once per kind of manager (parameters ``actor_id``, ``limit``, and
    ``after_at`` and ``after_id`` with ``after``).

    Admins see every milestone, may edit each, and see every course; they may read every
    student's earnings, so how many earned each milestone is counted here. Faculty see the
    milestones of the courses they help manage, may edit those of the courses they may edit,
    and name only those; the counts are read apart (``earned_counts``)."""
    m, c, q, e, cm = _MILESTONES, _COURSES, _QUIZZES, _EARNINGS, CourseManagement.__table__
    actor = bindparam("actor_id", type_=cm.c.user_id.type)
    order = (m.c.createdAt.desc(), m.c.id.desc())
    editors = [literal_column(f"'{role}'") for role in sorted(access.CAN_EDIT)]
    columns = [m.c.id, m.c.createdAt.label("created_at"), m.c.title, m.c.description, m.c.kind,
               *(m.c[name].label(name) for name in ("course_id", "quiz_id", "min_score", "streak_days", "reward_amount",
                                                     "reward_currency")),
               m.c.active, c.c.title.label("course_title"), q.c.title.label("quiz_title"),
               func.row_number().over(order_by=order).label("position")]
    if admin:
        columns += [true().label("can_edit"),
                    select(func.count()).where(e.c.milestone_id == m.c.id).scalar_subquery().label("earned")]
    else:
        role = select(cm.c.role).where(cm.c.course_id == m.c.course_id, cm.c.user_id == actor).scalar_subquery()
        columns += [role.in_(editors).label("can_edit"), literal_column("NULL").label("earned")]
    page = (select(*columns).select_from(m.outerjoin(c, c.c.id == m.c.course_id).outerjoin(q, q.c.id == m.c.quiz_id)))
    if not admin:
        page = page.where(exists().where(cm.c.course_id == m.c.course_id, cm.c.user_id == actor))
    if after:
        page = page.where(tuple_(m.c.createdAt, m.c.id) < tuple_(bindparam("after_at", type_=m.c.createdAt.type),
                                                                bindparam("after_id", type_=m.c.id.type)))
    page = page.order_by(*order).limit(bindparam("limit"))
    by_title = (c.c.title, c.c.id)
    courses = select(func.array_agg(aggregate_order_by(cast(c.c.id, String), *by_title)).label("course_ids"),
                     func.array_agg(aggregate_order_by(c.c.title, *by_title)).label("course_titles"))
    if not admin:
        courses = courses.join_from(c, cm, cm.c.course_id == c.c.id).where(cm.c.user_id == actor,
                                                                            cm.c.role.in_(editors))
    return beside_first_row(page, courses)


def manage_page(actor: User, cursor: str | None = None, size: int = PAGE_SIZE) -> ManagePage:
    """Milestones newest first (all of them for admins, those of faculty's courses for faculty)
    and the courses a milestone may name (every course for admins, those faculty may edit): one
    statement, and for faculty a second with how many students earned each milestone."""
    admin = actor.role == Role.ADMIN
    position = decode_cursor(cursor)
    params = {"actor_id": actor.id, "limit": size + 1}
    if position is not None:
        params["after_at"], params["after_id"] = position
    rows = db.session.execute(_manage_page_statement(admin, position is not None), params).all()
    first = rows[0]
    items = [row for row in rows if row.id is not None]
    next_cursor = None
    if len(items) > size:
        items = items[:size]
        next_cursor = encode_cursor(items[-1].created_at, items[-1].id)
    counts = {} if admin else earned_counts([row.id for row in items])
    page = Page([MilestoneRow(row, row.course_title, row.quiz_title,
                              row.earned if admin else counts.get(row.id, 0), bool(row.can_edit))
                 for row in items], next_cursor)
    return ManagePage(page, list(zip(first.course_ids or (), first.course_titles or (), strict=True)))


def may_manage(actor: User, milestone: Milestone) -> bool:
    """Admins manage every milestone; faculty those of the courses they may edit."""
    if actor.role == Role.ADMIN:
        return True
    return (actor.role == Role.FACULTY and milestone.course_id is not None
            and access.may(actor, milestone.course_id, access.CAN_EDIT))


def milestone_row(actor: User, milestone: Milestone) -> MilestoneRow:
    """One row of the list, after a change (three statements)."""
    course_title = quiz_title = None
    if milestone.course_id or milestone.quiz_id:
        course_title, quiz_title = db.session.execute(
            select(select(Course.title).where(Course.id == milestone.course_id).scalar_subquery(),
                   select(Quiz.title).where(Quiz.id == milestone.quiz_id).scalar_subquery())).one()
    return MilestoneRow(milestone, course_title, quiz_title, earned_counts([milestone.id]).get(milestone.id, 0),
                        may_manage(actor, milestone))


def earned_counts(milestone_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many students earned each milestone: a count over every student's earnings, which a
    manager may know though the rows themselves are private (read as the ledger role)."""
    if not milestone_ids:
        return {}
    from portal.money.wallets.ledger import as_ledger

    with as_ledger():
        return dict(db.session.execute(select(Earning.milestone_id, func.count())
                                       .where(Earning.milestone_id.in_(milestone_ids))
                                       .group_by(Earning.milestone_id)).all())


def quiz_choices(course_id: uuid.UUID | None) -> list[tuple[uuid.UUID, str]]:
    """The quizzes of one course, by title (none without a course)."""
    if course_id is None:
        return []
    return [(row[0], row[1]) for row in db.session.execute(
        select(Quiz.id, Quiz.title).where(Quiz.course_id == course_id).order_by(Quiz.title, Quiz.id))]


# ------------------------------------------------------------------------------ admins' review


@dataclass
class ReviewRow:
    earning: Earning
    student_name: str
    student_email: str
    milestone_title: str
    reversal_note: str | None


def review_page(status: str = "", cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """Every student's earnings, newest first, optionally of one status (admins; one statement)."""
    reversal, on = _reversal_join()
    stmt = (select(Earning, User.full_name, User.email, Milestone.title, reversal.description)
            .join(User, User.id == Earning.user_id)
            .join(Milestone, Milestone.id == Earning.milestone_id)
            .outerjoin(reversal, on))
    if status in EarningStatus._value2member_map_:
        stmt = stmt.where(Earning.status == EarningStatus(status))
    page = _keyset(stmt, Earning.created_at, Earning.id, cursor, size, lambda r: (r[0].created_at, r[0].id))
    page.items = [ReviewRow(*row) for row in page.items]
    return page


def review_row(earning_id: uuid.UUID) -> ReviewRow | None:
    reversal, on = _reversal_join()
    row = db.session.execute(
        select(Earning, User.full_name, User.email, Milestone.title, reversal.description)
        .join(User, User.id == Earning.user_id).join(Milestone, Milestone.id == Earning.milestone_id)
        .outerjoin(reversal, on).where(Earning.id == earning_id)
        .execution_options(populate_existing=True)).first()
    return ReviewRow(*row) if row else None


def pending_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Earning)
                             .where(Earning.status == EarningStatus.PENDING)) or 0
