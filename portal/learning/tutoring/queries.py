"""Reads for the tutor's pages: a student's conversations and their messages, the lesson
panel's current conversation, the student's Q&A history with search, and the course report
faculty read to see where their course should improve.

Every function here is one statement (lists are keyset-paged or capped), so a page's count
does not grow with the rows behind it. Row-level security already limits students to their own
conversations and questions; the functions filter by the student as well, and the course report
is only built for a course the reader is on the staff of (or for an admin), without a name.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Integer, and_, bindparam, cast, exists, func, or_, select, true, tuple_
from sqlalchemy.dialects.postgresql import aggregate_order_by

from portal.accounts.models import Role, User
from portal.db import base, db
from portal.errors import Forbidden, NotFound
from portal.learning.assessment.models import AttemptStatus, Quiz, QuizAttempt
from portal.learning.education.models import Course, CourseStatus, Enrollment, Module
from portal.learning.lms import access
from portal.learning.tutoring.models import Message, MessageRole, ReplyKind, TutoringSession, TutorQuestion
from portal.learning.tutoring.services import ENROLLED, OpenAttempt, idle_cutoff
from portal.pagination import Page, decode_cursor, encode_cursor

#: Conversations listed per page beside the chat.
SESSIONS_PAGE = 15
#: The most recent messages a conversation page shows (older ones are summarised).
CONVERSATION_LIMIT = 200
#: Messages the lesson panel shows of the current conversation.
PANEL_MESSAGES = 6
#: Questions per page of the history.
HISTORY_PAGE = 20
#: Search text is cut to this many characters.
MAX_SEARCH = 100
#: Rows in each list of the course report.
REPORT_ROWS = 10
#: The report's periods, in days (None: since the start).
REPORT_PERIODS: dict[str, int | None] = {"30": 30, "90": 90, "365": 365, "all": None}
HISTORY_SHOWS = {"all": "All questions", "helpful": "Marked helpful", "not_helpful": "Marked not helpful",
                 "unanswered": "Not answered"}


# ------------------------------------------------------------------ courses


def student_course(user: User, slug: str) -> Course:
    """The published course ``slug`` for a student enrolled in it (active or completed).

    A course that does not exist or is not published is a 404, as in the catalog; one the
    reader is not enrolled in a 403 that says nothing of its content."""
    row = db.session.execute(
        select(Course, Enrollment.status)
        .outerjoin(Enrollment, and_(Enrollment.course_id == Course.id, Enrollment.user_id == user.id))
        .where(Course.slug == (slug or "")[:80])
    ).first()
    if row is None or row[0].status != CourseStatus.PUBLISHED:
        raise NotFound("There is no such course in the catalog.")
    course, status = row
    if user.role != Role.STUDENT or status not in ENROLLED:
        raise Forbidden("Elara answers questions about the courses you are enrolled in. Enrol in a course to "
                        "ask about it.")
    return course


def _chat_course_statement():
    """``student_course``'s statement with, beside the course, the reader's open attempt at one of
    its quizzes (``services.open_attempt``, as a LATERAL subquery on the course)."""
    blocking = (
        select(QuizAttempt.id.label("attempt_id"), Quiz.id.label("quiz_id"), Quiz.title.label("quiz_title"),
               QuizAttempt.deadline_at.label("deadline_at"))
        .join(Quiz, Quiz.id == QuizAttempt.quiz_id)
        .where(QuizAttempt.user_id == bindparam("user"), Quiz.course_id == Course.id,
               QuizAttempt.status == AttemptStatus.IN_PROGRESS,
               or_(QuizAttempt.deadline_at.is_(None), QuizAttempt.deadline_at > bindparam("at")))
        .order_by(QuizAttempt.deadline_at.desc().nulls_first())
        .limit(1)
        .lateral("blocking")
    )
    return (
        select(Course, Enrollment.status, blocking.c.attempt_id, blocking.c.quiz_id, blocking.c.quiz_title,
               blocking.c.deadline_at)
        .outerjoin(Enrollment, and_(Enrollment.course_id == Course.id, Enrollment.user_id == bindparam("user")))
        .outerjoin(blocking, true())
        .where(Course.slug == bindparam("slug"))
    )


_CHAT_COURSE = _chat_course_statement()


def chat_course(user: User, slug: str) -> tuple[Course, OpenAttempt | None]:
    """``student_course`` and ``services.open_attempt`` for it, in one statement: what every
    page of the chat reads first. The same refusals as ``student_course``."""
    row = db.session.execute(_CHAT_COURSE, {"user": user.id, "slug": (slug or "")[:80], "at": base.utcnow()}).first()
    if row is None or row[0].status != CourseStatus.PUBLISHED:
        raise NotFound("There is no such course in the catalog.")
    course, status, attempt_id, quiz_id, quiz_title, deadline_at = row
    if user.role != Role.STUDENT or status not in ENROLLED:
        raise Forbidden("Elara answers questions about the courses you are enrolled in. Enrol in a course to "
                        "ask about it.")
    return course, (OpenAttempt(attempt_id, quiz_id, quiz_title, deadline_at) if attempt_id else None)


def staff_course(user: User, slug: str) -> Course:
    """The course ``slug`` for its staff (any management role) or an admin; a 404 for anyone
    else, as for the other staff pages of a course."""
    course = db.session.scalar(select(Course).where(Course.slug == (slug or "")[:80]))
    if course is None or not access.may(user, course.id, access.CAN_GRADE):
        raise NotFound("That course does not exist, or you are not on its staff.")
    return course


# ------------------------------------------------------------------ conversations


@dataclass
class SessionItem:
    id: uuid.UUID
    title: str
    started_at: datetime
    last_activity_at: datetime
    ended_at: datetime | None
    message_count: int
    #: Still going: not ended and not idle past the limit.
    is_open: bool


def _session_item(session: TutoringSession, cutoff: datetime) -> SessionItem:
    return SessionItem(session.id, session.title, session.started_at, session.last_activity_at, session.ended_at,
                       session.message_count, session.ended_at is None and session.last_activity_at >= cutoff)


def _sessions_page_statement(after: bool):
    stmt = select(TutoringSession).where(TutoringSession.user_id == bindparam("user"),
                                         TutoringSession.course_id == bindparam("course"))
    if after:
        stmt = stmt.where(tuple_(TutoringSession.last_activity_at, TutoringSession.id)
                          < tuple_(bindparam("after_at"), bindparam("after_id")))
    return stmt.order_by(TutoringSession.last_activity_at.desc(), TutoringSession.id.desc()).limit(bindparam("size"))


#: ``sessions_page``' statement, built once with and once without a cursor.
_SESSIONS_PAGE = {after: _sessions_page_statement(after) for after in (False, True)}


def sessions_page(user: User, course_id: uuid.UUID, cursor: str | None = None,
                  size: int = SESSIONS_PAGE) -> Page:
    """The student's conversations in a course, latest activity first, keyset-paged on
    ``(lastActivityAt, id)``."""
    position = decode_cursor(cursor)
    params = {"user": user.id, "course": course_id, "size": size + 1}
    if position is not None:
        params["after_at"], params["after_id"] = position
    rows = list(db.session.scalars(_SESSIONS_PAGE[position is not None], params))
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = encode_cursor(rows[-1].last_activity_at, rows[-1].id)
    cutoff = idle_cutoff()
    return Page([_session_item(row, cutoff) for row in rows], next_cursor)


def own_session(user: User, course_id: uuid.UUID, session_id: uuid.UUID) -> SessionItem:
    """One of the student's conversations in the course; a 404 for any other (someone else's,
    another course's, or none)."""
    session = db.session.scalar(select(TutoringSession).where(
        TutoringSession.id == session_id, TutoringSession.user_id == user.id, TutoringSession.course_id == course_id))
    if session is None:
        raise NotFound("There is no such conversation with Elara.")
    return _session_item(session, idle_cutoff())


@dataclass
class MessageView:
    id: uuid.UUID
    session_id: uuid.UUID
    role: MessageRole
    body: str
    created_at: datetime
    kind: ReplyKind | None = None
    source: str | None = None
    citations: list[dict] = field(default_factory=list)
    fallback_reason: str | None = None
    #: Tutor replies: the question it answers in the history, and the student's mark.
    question_id: uuid.UUID | None = None
    helpful: bool | None = None

    @property
    def is_tutor(self) -> bool:
        return self.role == MessageRole.TUTOR


def _message_rows(stmt) -> list[MessageView]:
    return [MessageView(m.id, m.session_id, m.role, m.body, m.created_at, m.kind, m.source.value if m.source else None,
                        list(m.citations or []), m.fallback_reason, question_id, helpful)
            for m, question_id, helpful in db.session.execute(stmt)]


def _messages_select():
    return (select(Message, TutorQuestion.id, TutorQuestion.helpful)
            .outerjoin(TutorQuestion, TutorQuestion.reply_message_id == Message.id))


@dataclass
class Conversation:
    messages: list[MessageView]
    #: Older messages not shown (more than CONVERSATION_LIMIT).
    earlier: bool = False


def conversation(user: User, session_id: uuid.UUID, limit: int = CONVERSATION_LIMIT) -> Conversation:
    """The conversation's latest ``limit`` messages in the order they were written."""
    rows = _message_rows(
        _messages_select()
        .where(Message.session_id == session_id, Message.user_id == user.id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit + 1))
    earlier = len(rows) > limit
    return Conversation(list(reversed(rows[:limit])), earlier)


@dataclass
class Panel:
    """What the lesson's "Ask Elara" panel shows: the current conversation's latest messages."""

    session_id: uuid.UUID | None
    messages: list[MessageView]


def current_conversation(user: User, course_id: uuid.UUID, limit: int = PANEL_MESSAGES) -> Panel:
    """The student's conversation in the course that is still going (the latest one, not ended
    and not idle), with its last ``limit`` messages; one statement."""
    current = (select(TutoringSession.id)
               .where(TutoringSession.user_id == user.id, TutoringSession.course_id == course_id,
                      TutoringSession.ended_at.is_(None), TutoringSession.last_activity_at >= idle_cutoff())
               .order_by(TutoringSession.last_activity_at.desc())
               .limit(1)
               .scalar_subquery())
    rows = _message_rows(
        _messages_select()
        .where(Message.session_id == current, Message.user_id == user.id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit))
    return Panel(rows[0].session_id if rows else None, list(reversed(rows)))


# ------------------------------------------------------------------ history


@dataclass
class HistoryFilters:
    q: str = ""
    course_id: uuid.UUID | None = None
    show: str = "all"

    @classmethod
    def clean(cls, q: str | None = None, course: str | None = None, show: str | None = None) -> HistoryFilters:
        try:
            course_id = uuid.UUID(course) if course else None
        except ValueError:
            course_id = None
        return cls(" ".join((q or "").split())[:MAX_SEARCH], course_id, show if show in HISTORY_SHOWS else "all")

    def as_args(self) -> dict:
        args = {"q": self.q, "course": str(self.course_id) if self.course_id else "",
                "show": "" if self.show == "all" else self.show}
        return {key: value for key, value in args.items() if value}

    @property
    def active(self) -> bool:
        return bool(self.as_args())


@dataclass
class HistoryItem:
    id: uuid.UUID
    question: str
    created_at: datetime
    course_title: str
    course_slug: str
    topic_title: str | None
    reply_kind: ReplyKind
    answered: bool
    helpful: bool | None
    session_id: uuid.UUID
    reply_message_id: uuid.UUID | None


def _like(text_: str) -> str:
    return "%" + text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def history(user: User, filters: HistoryFilters, cursor: str | None = None, size: int = HISTORY_PAGE) -> Page:
    """The student's questions, newest first, keyset-paged on ``(createdAt, id)``: those that
    match the search (full-text over the question, or its text containing the words as typed,
    for partial words), in a course, marked helpful or not, or not answered."""
    stmt = (select(TutorQuestion.id, TutorQuestion.question, TutorQuestion.created_at, Course.title, Course.slug,
                   Module.title, TutorQuestion.reply_kind, TutorQuestion.answered, TutorQuestion.helpful,
                   TutorQuestion.session_id, TutorQuestion.reply_message_id)
            .join(Course, Course.id == TutorQuestion.course_id)
            .outerjoin(Module, Module.id == TutorQuestion.topic_module_id)
            .where(TutorQuestion.user_id == user.id))
    if filters.q:
        stmt = stmt.where(or_(TutorQuestion.search.op("@@")(func.websearch_to_tsquery("simple", filters.q)),
                              TutorQuestion.question.ilike(_like(filters.q), escape="\\")))
    if filters.course_id is not None:
        stmt = stmt.where(TutorQuestion.course_id == filters.course_id)
    if filters.show == "helpful":
        stmt = stmt.where(TutorQuestion.helpful.is_(True))
    elif filters.show == "not_helpful":
        stmt = stmt.where(TutorQuestion.helpful.is_(False))
    elif filters.show == "unanswered":
        stmt = stmt.where(TutorQuestion.answered.is_(False))
    position = decode_cursor(cursor)
    if position is not None:
        stmt = stmt.where(tuple_(TutorQuestion.created_at, TutorQuestion.id) < tuple_(*position))
    rows = db.session.execute(
        stmt.order_by(TutorQuestion.created_at.desc(), TutorQuestion.id.desc()).limit(size + 1)).all()
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = encode_cursor(rows[-1][2], rows[-1][0])
    return Page([HistoryItem(*row) for row in rows], next_cursor)


def history_courses(user: User) -> list[tuple[uuid.UUID, str]]:
    """The courses the student has asked Elara about: the history's course filter."""
    asked = exists().where(TutorQuestion.course_id == Course.id, TutorQuestion.user_id == user.id)
    return [(row.id, row.title) for row in db.session.execute(
        select(Course.id, Course.title).where(asked).order_by(Course.title))]


# ------------------------------------------------------------------ the course report


@dataclass
class TopicRow:
    module_id: uuid.UUID | None
    title: str | None
    questions: int
    answered: int
    marked: int
    helpful: int

    @property
    def answered_percent(self) -> int:
        return round(100 * self.answered / self.questions) if self.questions else 0

    @property
    def helpful_percent(self) -> int | None:
        return round(100 * self.helpful / self.marked) if self.marked else None


@dataclass
class AskedRow:
    """A question as students asked it (grouped by its normalised words), without who asked."""

    wording: str
    times: int
    students: int
    answered: int
    last_asked: datetime


@dataclass
class CourseReport:
    course: Course
    period: str
    totals: TopicRow
    students: int
    topics: list[TopicRow]
    most_asked: list[AskedRow]
    unanswered: list[AskedRow]


def _period_start(period: str) -> datetime | None:
    days = REPORT_PERIODS.get(period)
    return base.utcnow() - timedelta(days=days) if days else None


def _asked(course_id: uuid.UUID, since: datetime | None, *, unanswered: bool, limit: int) -> list[AskedRow]:
    #: The latest wording of the group.
    latest = func.array_agg(aggregate_order_by(TutorQuestion.question, TutorQuestion.created_at.desc()))[1]
    times = func.count()
    last = func.max(TutorQuestion.created_at)
    stmt = (select(latest, times, func.count(TutorQuestion.user_id.distinct()),
                   func.sum(cast(TutorQuestion.answered, Integer)), last)
            .where(TutorQuestion.course_id == course_id)
            .group_by(TutorQuestion.normalized))
    if since is not None:
        stmt = stmt.where(TutorQuestion.created_at >= since)
    if unanswered:
        stmt = stmt.where(TutorQuestion.answered.is_(False)).order_by(last.desc(), times.desc())
    else:
        stmt = stmt.order_by(times.desc(), last.desc())
    return [AskedRow(wording, n, students, answered or 0, at)
            for wording, n, students, answered, at in db.session.execute(stmt.limit(limit))]


def course_report(course: Course, period: str = "90", limit: int = REPORT_ROWS) -> CourseReport:
    """Where the course should improve, from its students' questions in ``period``: the most
    asked questions, the topics (modules) asked about with how often the tutor found an answer
    and how often students found it helpful, and the latest questions it could not answer.
    Counts only: no student is named. Three statements."""
    period = period if period in REPORT_PERIODS else "90"
    since = _period_start(period)
    helpful = func.count().filter(TutorQuestion.helpful.is_(True))
    marked = func.count().filter(TutorQuestion.helpful.is_not(None))
    total_row = func.grouping(TutorQuestion.topic_module_id)
    stmt = (select(total_row, TutorQuestion.topic_module_id, Module.title, Module.position, func.count(),
                   func.sum(cast(TutorQuestion.answered, Integer)), marked, helpful,
                   func.count(TutorQuestion.user_id.distinct()))
            .outerjoin(Module, Module.id == TutorQuestion.topic_module_id)
            .where(TutorQuestion.course_id == course.id)
            .group_by(func.grouping_sets(tuple_(TutorQuestion.topic_module_id, Module.title, Module.position),
                                         tuple_())))
    if since is not None:
        stmt = stmt.where(TutorQuestion.created_at >= since)
    totals, students, topics = TopicRow(None, None, 0, 0, 0, 0), 0, []
    for is_total, module_id, title, position, n, answered, n_marked, n_helpful, n_students in db.session.execute(
            stmt):
        row = TopicRow(module_id, title, n, answered or 0, n_marked, n_helpful)
        if is_total:
            totals, students = row, n_students
        else:
            topics.append((position if position is not None else 10**6, row))
    topics.sort(key=lambda pair: (-pair[1].questions, pair[0]))
    return CourseReport(course, period, totals, students, [row for _, row in topics],
                        _asked(course.id, since, unanswered=False, limit=limit),
                        _asked(course.id, since, unanswered=True, limit=limit))


__all__ = [
    "HISTORY_SHOWS", "REPORT_PERIODS", "Conversation", "CourseReport", "HistoryFilters", "HistoryItem",
    "MessageView", "Panel", "SessionItem", "conversation", "course_report", "current_conversation", "history",
    "chat_course", "history_courses", "own_session", "sessions_page", "staff_course", "student_course",
]
