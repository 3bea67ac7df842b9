"""The tutor's conversations: asking Elara, ending a conversation, marking an answer, and the
sweep that ends conversations left idle.

Rules, in one place:

- A question is plain text. It is trimmed, control characters are removed (line breaks kept,
  tabs made spaces, bidirectional overrides dropped), and it must hold a word and be at most
  ``MAX_QUESTION_CHARS`` long. Text that looks like markup (``<script>``) is stored exactly as
  typed: it is only ever shown escaped.
- Only students enrolled in a published course (active, or completed: they may still read the
  lessons) ask its tutor; anyone else is refused without a word about the course's content.
  The tutor searches that course's lessons only.
- While the student has an open attempt at a quiz of the course (in progress, its deadline not
  passed) the tutor of that course is closed, so the quiz stays the student's own work. The
  refusal says which quiz and when the tutor opens again.
- A conversation (``tutoring_sessions``) belongs to one student and one course. Asking with no
  conversation starts one, titled by the question. A conversation that has ended (the student
  ended it, or it sat idle ``TUTOR_SESSION_IDLE_MINUTES`` and was ended at its last message) is
  never reopened: asking in it starts a new one titled "Continued: <its title>". So every
  conversation keeps the start, end and duration it really had.
- Asks of one student in one course are serialised (a transaction-level advisory lock), and the
  same question asked again within ``REPEAT_SECONDS`` returns the first exchange: a double
  submit answers once.
- Each exchange stores the student's message, the tutor's (kind, source, citations, why the
  model was not used), and a ``tutor_questions`` row (normalised text, topic, answered, kind).
  If composing the reply fails unexpectedly the question is still kept, with a reply saying the
  tutor could not answer just now.
- A student's plan may cap the questions asked per UTC day (``tutor_questions_per_day``) and
  decides whether the optional language model rewords answers (``tutor_model``). The tutor asks
  through the ``entitlement_asked`` event (learning never imports money); with no answer (billing
  not wired) there is no cap and the model is used when configured. A repeated question (a
  double submit) is not counted again.
- Marks (helpful or not) are the student's own; changing a mark is allowed, marking twice the
  same way changes nothing.

Services take the acting user, validate, change rows and flush; the caller commits.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import Integer, cast, func, or_, select, text, update

from portal import events
from portal.accounts.models import Role, User
from portal.db import base, db
from portal.errors import Conflict, DomainError, Forbidden, NotFound
from portal.learning.assessment.models import AttemptStatus, Quiz, QuizAttempt
from portal.learning.education.models import Course, CourseStatus, Enrollment, EnrollmentStatus, Lesson
from portal.learning.tutoring import answers, llm
from portal.learning.tutoring.models import (
    Message,
    MessageRole,
    ReplyKind,
    ReplySource,
    TutoringSession,
    TutorQuestion,
)

log = logging.getLogger(__name__)

#: The longest question the tutor takes, in characters.
MAX_QUESTION_CHARS = 1000
#: How much of a refused over-long question is given back to the form (a browser's textarea
#: stops at ``MAX_QUESTION_CHARS``; only other clients send more).
MAX_KEPT_CHARS = 20_000
#: A conversation's title: the first question, shortened.
TITLE_CHARS = 80
CONTINUED = "Continued: "
#: The same question again within this many seconds is a double submit, not a new question.
REPEAT_SECONDS = 30
#: A tutor message is at most this long (the messages table's CHECK).
MAX_MESSAGE_CHARS = 20_000
#: Idle conversations the sweep ends per run (the rest wait for the next run).
SWEEP_BATCH = 1000
ENROLLED = (EnrollmentStatus.ACTIVE, EnrollmentStatus.COMPLETED)

_BIDI = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])
_BLANK_LINES = re.compile(r"\n{3,}")
_WORD = re.compile(r"\w+")

COULD_NOT_ANSWER = ("I could not look this up just now. Your question is saved here; please ask it again "
                    "in a moment, or look through the course's lessons in the meantime.")


class TutorError(DomainError):
    """A question the tutor cannot take as it is."""

    status_code = 422
    field = "question"


class TutorLimitReached(DomainError):
    """The student's plan allows no more questions today."""

    status_code = 429
    field = "question"


def plan_allows(user_id: uuid.UUID, feature: str, default):
    """What the student's plan says about ``feature`` (``entitlement_asked``), or ``default``
    when no one answers."""
    answers_ = [value for _receiver, value in events.entitlement_asked.send(user_id=user_id, feature=feature)]
    return answers_[0] if answers_ else default


def questions_asked_today(user_id: uuid.UUID, now: datetime) -> int:
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return db.session.scalar(select(func.count()).select_from(TutorQuestion).where(
        TutorQuestion.user_id == user_id, TutorQuestion.created_at >= day_start)) or 0


def _within_daily_cap(user: User, now: datetime) -> None:
    cap = plan_allows(user.id, "tutor_questions_per_day", None)
    if cap is not None and questions_asked_today(user.id, now) >= cap:
        raise TutorLimitReached(f"You have asked the {cap} questions your plan allows today. Ask again "
                                "tomorrow, or move to a paid plan under Wallet, Plan & billing for unlimited "
                                "questions. Your question is still in the box.")


class TutorClosed(Conflict):
    """The tutor of the course is closed while a quiz attempt of it is open."""

    def __init__(self, attempt: OpenAttempt):
        super().__init__(attempt.message() + " Your question was not sent; it is still in the box for later.")
        self.attempt = attempt


# ------------------------------------------------------------------ checks


def clean_question(raw: str | None) -> str:
    """The question as it will be stored: line breaks made ``\\n``, tabs spaces, other control
    characters and bidirectional overrides removed, at most one blank line in a row, trimmed.
    Raises TutorError when nothing is left, no word is in it, or it is too long."""
    value = (raw or "").replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    value = "".join(ch for ch in value if ch == "\n" or unicodedata.category(ch) != "Cc").translate(_BIDI)
    value = _BLANK_LINES.sub("\n\n", "\n".join(line.rstrip() for line in value.split("\n"))).strip()
    if not value:
        raise TutorError("Write your question first: the box is empty.")
    if len(value) > MAX_QUESTION_CHARS:
        raise TutorError(f"Your question is {len(value):,} characters long; Elara takes at most "
                         f"{MAX_QUESTION_CHARS:,}. Shorten it, or ask it in two parts.")
    if not _WORD.search(value):
        raise TutorError("Write your question in words: it has no letters or numbers.")
    return value


def normalise(question: str) -> str:
    """Lower-cased words without punctuation: how repeated questions are counted."""
    return " ".join(_WORD.findall(question.lower()))[:MAX_QUESTION_CHARS]


def title_of(question: str, prefix: str = "") -> str:
    flat = " ".join(question.split())
    room = TITLE_CHARS - len(prefix)
    if len(flat) > room:
        flat = flat[: room - 1].rsplit(" ", 1)[0].rstrip(" ,;:.") + "…"
    return (prefix + flat)[:200]


def _enrolled(user: User, course: Course) -> bool:
    if user.role != Role.STUDENT or course.status != CourseStatus.PUBLISHED:
        return False
    status = db.session.scalar(select(Enrollment.status).where(Enrollment.course_id == course.id,
                                                               Enrollment.user_id == user.id))
    return status in ENROLLED


def require_enrolled(user: User, course: Course) -> None:
    if not _enrolled(user, course):
        raise Forbidden("Elara answers questions about the courses you are enrolled in. Enrol in a course to "
                        "ask about it.")


@dataclass(frozen=True)
class OpenAttempt:
    """The student's open attempt at a quiz of the course that closes its tutor (the one that
    ends last, when there are several)."""

    attempt_id: uuid.UUID
    quiz_id: uuid.UUID
    quiz_title: str
    #: When the attempt's time runs out; None for an untimed quiz that never closes.
    deadline_at: datetime | None

    def message(self) -> str:
        when = ("when you submit it" if self.deadline_at is None else
                f"when you submit it, or at the latest at {self.deadline_at.strftime('%H:%M UTC on %d %b %Y')} "
                "when its time runs out")
        return (f"Elara is closed while your attempt at the quiz “{self.quiz_title}” is open, so the quiz "
                f"stays your own work. It opens again {when}.")


def open_attempt(user_id: uuid.UUID, course_id: uuid.UUID, at: datetime | None = None) -> OpenAttempt | None:
    """The open quiz attempt that keeps the course's tutor closed, or None. One statement."""
    at = at or base.utcnow()
    row = db.session.execute(
        select(QuizAttempt.id, Quiz.id, Quiz.title, QuizAttempt.deadline_at)
        .join(Quiz, Quiz.id == QuizAttempt.quiz_id)
        .where(QuizAttempt.user_id == user_id, Quiz.course_id == course_id,
               QuizAttempt.status == AttemptStatus.IN_PROGRESS,
               or_(QuizAttempt.deadline_at.is_(None), QuizAttempt.deadline_at > at))
        .order_by(QuizAttempt.deadline_at.desc().nulls_first())
        .limit(1)
    ).first()
    return OpenAttempt(*row) if row else None


def idle_minutes() -> int:
    return max(1, int(current_app.config.get("TUTOR_SESSION_IDLE_MINUTES", 30)))


def idle_cutoff(at: datetime | None = None) -> datetime:
    """Conversations whose last message is older than this are over."""
    return (at or base.utcnow()) - timedelta(minutes=idle_minutes())


def _end(session: TutoringSession, at: datetime) -> None:
    at = max(at, session.started_at)
    session.ended_at = at
    session.duration_seconds = max(0, int((at - session.started_at).total_seconds()))


# ------------------------------------------------------------------ asking


@dataclass
class Exchange:
    """One question and its reply, as stored."""

    session: TutoringSession
    question: Message
    reply: Message
    record: TutorQuestion
    #: The conversation this one continues (it had ended), if any.
    continued_from: TutoringSession | None = None
    #: A new conversation was started for this question.
    started: bool = False
    #: The same question came again within REPEAT_SECONDS: nothing new was stored.
    repeated: bool = False


def _own_session(user: User, course: Course, session_id: uuid.UUID, *, lock: bool = False) -> TutoringSession:
    stmt = select(TutoringSession).where(TutoringSession.id == session_id, TutoringSession.user_id == user.id,
                                         TutoringSession.course_id == course.id)
    session = db.session.scalar(stmt.with_for_update() if lock else stmt)
    if session is None:
        raise NotFound("There is no such conversation with Elara.")
    return session


def _lesson_of_course(course: Course, lesson_id: uuid.UUID | None) -> uuid.UUID | None:
    if lesson_id is None:
        return None
    found = db.session.scalar(select(Lesson.id).where(Lesson.id == lesson_id, Lesson.course_id == course.id))
    if found is None:
        raise NotFound("There is no such lesson in this course.")
    return found


def _repeat(user: User, course: Course, normalized: str, now: datetime,
            session: TutoringSession | None) -> Exchange | None:
    """The exchange of the same question asked moments ago, if there is one: in the same
    conversation, in a new one (none was given), or in the continuation of the ended one given."""
    record = db.session.scalar(
        select(TutorQuestion)
        .where(TutorQuestion.user_id == user.id, TutorQuestion.course_id == course.id,
               TutorQuestion.created_at >= now - timedelta(seconds=REPEAT_SECONDS))
        .order_by(TutorQuestion.created_at.desc())
        .limit(1)
    )
    if record is None or record.normalized != normalized or record.reply_message_id is None:
        return None
    if session is not None and record.session_id != session.id and session.ended_at is None:
        return None
    return Exchange(db.session.get(TutoringSession, record.session_id),
                    db.session.get(Message, record.question_message_id),
                    db.session.get(Message, record.reply_message_id), record, repeated=True)


def _compose(course: Course, question: str) -> answers.Reply:
    """The engine's reply. A failure inside it must not lose the student's question: it is
    logged and answered with an apology (a savepoint undoes whatever the engine began)."""
    savepoint = db.session.begin_nested()
    try:
        reply = answers.compose_reply(course, question, searchable_course_ids=[course.id])
    except DomainError:
        savepoint.rollback()
        raise
    except Exception:  # the conversation is kept whatever the engine does; logged
        savepoint.rollback()
        log.exception("the tutor could not compose a reply in course %s", course.id)
        return answers.Reply(kind=ReplyKind.NOT_FOUND, body=COULD_NOT_ANSWER, citations=[], topic_module_id=None,
                             source=ReplySource.RETRIEVAL, fallback_reason="the tutor failed to compose a reply")
    savepoint.commit()
    return reply


def _citations(reply: answers.Reply) -> list[dict]:
    """The reply's citations as stored: ids that are UUIDs, the fields pages show, nothing else."""
    kept = []
    for citation in reply.citations or []:
        try:
            lesson_id = str(uuid.UUID(str(citation.get("lesson_id"))))
        except (TypeError, ValueError, AttributeError):
            continue
        kept.append({
            "passage_id": str(citation.get("passage_id") or ""),
            "lesson_id": lesson_id,
            "lesson_title": str(citation.get("lesson_title") or "")[:300],
            "module_title": str(citation.get("module_title") or "")[:300],
            "heading": str(citation.get("heading") or "")[:300],
            "anchor": str(citation.get("anchor") or "")[:120],
            "rank": citation.get("rank"),
        })
    return kept


def draft_for_the_model(user: User, course: Course, question: str) -> answers.Draft | None:
    """When a model is configured: the reply found in the lessons, for the caller to have
    reworded (``answers.finish_reply``) after ending its read-only transaction, so no database
    connection waits on the model, then to pass to ``ask``. None when no model would be asked:
    none configured, nothing found, or a question ``ask`` will refuse (it says why)."""
    if not llm.config().enabled or not plan_allows(user.id, "tutor_model", True):
        return None
    try:
        text_ = clean_question(question)
        require_enrolled(user, course)
    except DomainError:
        return None
    if open_attempt(user.id, course.id, base.utcnow()) is not None:
        return None
    try:
        with db.session.begin_nested():
            draft = answers.draft_reply(course, text_, searchable_course_ids=[course.id])
    except Exception:  # ``ask`` composes again and keeps the question whatever happens; logged
        log.exception("the tutor could not draft a reply in course %s", course.id)
        return None
    return draft if draft.for_the_model else None


def ask(user: User, course: Course, question: str, *, session_id: uuid.UUID | None = None,
        lesson_id: uuid.UUID | None = None, reply: answers.Reply | None = None) -> Exchange:
    """Ask Elara ``question`` about ``course``; see the module docstring for the rules.

    ``reply``: the reply already composed for this question (the model's, from
    ``draft_for_the_model``); without it the reply is composed here."""
    text_ = clean_question(question)
    require_enrolled(user, course)
    now = base.utcnow()
    blocking = open_attempt(user.id, course.id, now)
    if blocking is not None:
        raise TutorClosed(blocking)
    lesson_id = _lesson_of_course(course, lesson_id)
    db.session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                       {"key": f"tutor-ask:{user.id}:{course.id}"})
    session = _own_session(user, course, session_id, lock=True) if session_id is not None else None
    normalized = normalise(text_)
    repeated = _repeat(user, course, normalized, now, session)
    if repeated is not None:
        return repeated
    _within_daily_cap(user, now)

    continued_from = None
    if session is not None and session.ended_at is None and session.last_activity_at < idle_cutoff(now):
        _end(session, session.last_activity_at)  # the sweep had not come by yet
    if session is not None and session.ended_at is not None:
        continued_from = session
        session = None
    started = session is None
    if started:
        title = (title_of(continued_from.title.removeprefix(CONTINUED), CONTINUED) if continued_from
                 else title_of(text_))
        session = TutoringSession(user_id=user.id, course_id=course.id,
                                  lesson_id=lesson_id or (continued_from.lesson_id if continued_from else None),
                                  title=title, started_at=now, last_activity_at=now, message_count=0)
        db.session.add(session)
        db.session.flush()

    asked = Message(session_id=session.id, user_id=user.id, role=MessageRole.STUDENT, body=text_,
                    created_at=now, updated_at=now)
    db.session.add(asked)
    db.session.flush()

    reply = reply or _compose(course, text_)
    answered_at = max(base.utcnow(), now + timedelta(microseconds=1))
    body = (reply.body or "").strip()[:MAX_MESSAGE_CHARS] or COULD_NOT_ANSWER
    kind = ReplyKind(reply.kind)
    answer = Message(session_id=session.id, user_id=user.id, role=MessageRole.TUTOR, body=body, kind=kind,
                     source=ReplySource(reply.source), citations=_citations(reply),
                     fallback_reason=(reply.fallback_reason or None) and reply.fallback_reason[:200],
                     created_at=answered_at, updated_at=answered_at)
    db.session.add(answer)
    db.session.flush()
    record = TutorQuestion(user_id=user.id, course_id=course.id, session_id=session.id,
                           question_message_id=asked.id, reply_message_id=answer.id, question=text_,
                           normalized=normalized, topic_module_id=reply.topic_module_id, reply_kind=kind,
                           answered=kind != ReplyKind.NOT_FOUND, created_at=now, updated_at=now)
    db.session.add(record)
    db.session.execute(
        update(TutoringSession).where(TutoringSession.id == session.id)
        .values(message_count=TutoringSession.message_count + 2, last_activity_at=answered_at,
                updated_at=answered_at)
    )
    db.session.flush()
    db.session.refresh(session, ["message_count", "last_activity_at"])
    events.tutor_asked.send(user=user, course=course, question=record)
    return Exchange(session, asked, answer, record, continued_from=continued_from, started=started)


# ------------------------------------------------------------------ ending and marking


def end_session(user: User, session_id: uuid.UUID) -> TutoringSession:
    """The student ends their conversation now. Ending an ended one changes nothing."""
    session = db.session.scalar(select(TutoringSession).where(TutoringSession.id == session_id,
                                                              TutoringSession.user_id == user.id)
                                .with_for_update())
    if session is None:
        raise NotFound("There is no such conversation with Elara.")
    if session.ended_at is None:
        _end(session, base.utcnow())
        db.session.flush()
    return session


def end_idle_sessions(at: datetime | None = None, limit: int = SWEEP_BATCH) -> int:
    """End every conversation idle for ``TUTOR_SESSION_IDLE_MINUTES``, at its last message
    (the idle time after it is not study time). Rows another transaction holds are skipped and
    ended next time. Returns how many were ended."""
    cutoff = idle_cutoff(at)
    due = (select(TutoringSession.id)
           .where(TutoringSession.ended_at.is_(None), TutoringSession.last_activity_at < cutoff)
           .order_by(TutoringSession.last_activity_at)
           .limit(limit)
           .with_for_update(skip_locked=True)
           .scalar_subquery())
    ends = func.greatest(TutoringSession.last_activity_at, TutoringSession.started_at)
    result = db.session.execute(
        update(TutoringSession)
        .where(TutoringSession.id.in_(due))
        .values(ended_at=ends,
                duration_seconds=cast(func.floor(func.extract("epoch", ends - TutoringSession.started_at)), Integer),
                updated_at=base.utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def mark(user: User, question_id: uuid.UUID, helpful: bool) -> TutorQuestion:
    """The student marks the answer to their question helpful or not (again, or the other way)."""
    record = db.session.scalar(select(TutorQuestion).where(TutorQuestion.id == question_id,
                                                           TutorQuestion.user_id == user.id)
                               .with_for_update())
    if record is None:
        raise NotFound("There is no such question in your history.")
    if record.helpful is not bool(helpful):
        record.helpful = bool(helpful)
        record.marked_at = base.utcnow()
        db.session.flush()
    return record


__all__ = [
    "CONTINUED", "MAX_QUESTION_CHARS", "Exchange", "OpenAttempt", "TutorClosed", "TutorError", "ask",
    "clean_question", "end_idle_sessions", "end_session", "idle_cutoff", "mark", "normalise", "open_attempt",
    "require_enrolled",
]
