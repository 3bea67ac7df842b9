"""Elara, the course tutor: lesson passages it answers from, tutoring sessions and their
messages, the Q&A history, learning insights and personal learning paths (spec service 12,
Azora Sapiens).

The tutor needs no model to download: it answers from ``lesson_passages``, the course's lessons
cut at their headings and indexed for PostgreSQL full-text search in the course's language. A
configured language model only rewords an answer; the citations always come from retrieval.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, REGCONFIG, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum


class LessonPassage(TimestampedModel):
    """One section of a lesson (the text under one heading), the unit the tutor retrieves and
    cites. Rebuilt from the lesson whenever the lesson is saved.

    Not audited: it is a derived search index, rebuilt wholesale from ``lessons`` (which is
    audited), so a trail of its rows would only repeat the lesson's changes many times over."""

    __tablename__ = "lesson_passages"
    __audited__ = False

    lesson_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"), index=True)
    #: Kept from the lesson so retrieval filters by course and topic without joins.
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    module_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"), index=True)
    #: Order inside the lesson, from 1.
    position: Mapped[int] = mapped_column(Integer)
    #: The section's heading ("" for the text before the first heading).
    heading: Mapped[str] = mapped_column(String(300), default="")
    #: The heading's id on the lesson page (``#anchor``), "" for the lesson's top.
    anchor: Mapped[str] = mapped_column(String(120), default="")
    #: Plain text of the section (markdown stripped).
    body: Mapped[str] = mapped_column(Text)
    #: The course's text-search configuration when the passage was indexed.
    language: Mapped[str] = mapped_column(REGCONFIG, server_default=text("'english'::regconfig"))
    search: Mapped[str] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector(language, coalesce(heading, '')), 'A') || "
            "setweight(to_tsvector(language, coalesce(body, '')), 'B')",
            persisted=True,
        ),
        deferred=True,
    )

    __table_args__ = (
        UniqueConstraint("lesson_id", "position"),
        Index("ix_lesson_passages_search", "search", postgresql_using="gin"),
        CheckConstraint("position >= 1", name="position_positive"),
    )


class TutoringSession(TimestampedModel):
    """One conversation of a student with the tutor about one course."""

    __tablename__ = "tutoring_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    #: The lesson whose panel the session was opened from, if any.
    lesson_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lessons.id", ondelete="SET NULL"), index=True)
    #: The first question, shortened: how the session is listed.
    title: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    #: The last message's time; a session idle for long is ended at that time.
    last_activity_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Seconds from start to end, set when the session ends.
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    message_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        Index("ix_tutoring_sessions_user_activity", "user_id", text('"lastActivityAt" DESC')),
        CheckConstraint('"endedAt" IS NULL OR "endedAt" >= "startedAt"', name="ends_after_start"),
        CheckConstraint('("endedAt" IS NULL) = ("durationSeconds" IS NULL) AND '
                        '("durationSeconds" IS NULL OR "durationSeconds" >= 0)', name="duration_with_end"),
        CheckConstraint('"messageCount" >= 0', name="message_count_positive"),
    )


class MessageRole(enum.StrEnum):
    STUDENT = "student"
    TUTOR = "tutor"


class ReplyKind(enum.StrEnum):
    """What the tutor's reply is."""

    ANSWER = "answer"  # passages found and quoted
    HINT = "hint"  # the question looks like one of the course's quiz questions
    NOT_FOUND = "not_found"  # nothing relevant: says so and suggests where to look


class ReplySource(enum.StrEnum):
    RETRIEVAL = "retrieval"  # composed from the passages alone
    MODEL = "model"  # reworded by the configured language model


class Message(TimestampedModel):
    __tablename__ = "messages"

    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tutoring_sessions.id", ondelete="CASCADE"),
                                                  index=True)
    #: The session's student, kept here for row-level security.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[MessageRole] = mapped_column(string_enum(MessageRole, "role"))
    #: Plain text as typed (student) or composed (tutor); escaped when shown.
    body: Mapped[str] = mapped_column(Text)
    #: Tutor replies only.
    kind: Mapped[ReplyKind | None] = mapped_column(string_enum(ReplyKind, "kind"))
    source: Mapped[ReplySource | None] = mapped_column(string_enum(ReplySource, "source"))
    #: Tutor replies: the passages the reply stands on, in rank order:
    #: ``[{"passage_id", "lesson_id", "lesson_title", "heading", "anchor", "rank"}]``.
    citations: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    #: Tutor replies: why the model was not used when one is configured (timeout, error, garbage).
    fallback_reason: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_messages_session_created", "session_id", "createdAt"),
        CheckConstraint("(role = 'tutor') = (kind IS NOT NULL) AND (role = 'tutor') = (source IS NOT NULL)",
                        name="tutor_fields"),
        CheckConstraint("length(body) BETWEEN 1 AND 20000", name="body_length"),
    )


class TutorQuestion(TimestampedModel):
    """The Q&A history: each question a student asked, what it was about and how it went."""

    __tablename__ = "tutor_questions"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tutoring_sessions.id", ondelete="CASCADE"),
                                                  index=True)
    question_message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"),
                                                           unique=True)
    reply_message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"),
                                                               unique=True)
    #: The question as asked.
    question: Mapped[str] = mapped_column(String(1000))
    #: Lower-cased words of the question without punctuation: how repeats are counted.
    normalized: Mapped[str] = mapped_column(String(1000), index=True)
    #: The topic: the module of the best-matching passage (none when nothing matched).
    topic_module_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("modules.id", ondelete="SET NULL"),
                                                              index=True)
    reply_kind: Mapped[ReplyKind] = mapped_column(string_enum(ReplyKind, "reply_kind"))
    #: Whether the tutor found passages that answer it (answers and hints; not "not found").
    answered: Mapped[bool] = mapped_column(Boolean)
    #: The student's mark: helpful (true), not helpful (false) or none yet.
    helpful: Mapped[bool | None] = mapped_column(Boolean)
    marked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    search: Mapped[str] = mapped_column(
        TSVECTOR, Computed("to_tsvector('simple', coalesce(question, ''))", persisted=True), deferred=True)

    __table_args__ = (
        Index("ix_tutor_questions_user_created", "user_id", text('"createdAt" DESC')),
        Index("ix_tutor_questions_course_created", "course_id", text('"createdAt" DESC')),
        Index("ix_tutor_questions_search", "search", postgresql_using="gin"),
        CheckConstraint('(helpful IS NULL) = ("markedAt" IS NULL)', name="mark_with_time"),
        CheckConstraint("answered = (\"replyKind\" <> 'not_found')", name="answered_matches_kind"),
    )


class InsightKind(enum.StrEnum):
    WEAK_TOPIC = "weak_topic"
    STRONG_TOPIC = "strong_topic"
    PACE = "pace"


class LearningInsight(TimestampedModel):
    """One thing the portal has learned about how a student does in a course, with what it is
    based on. The set for a (student, course) is replaced whenever it is recomputed."""

    __tablename__ = "learning_insights"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    kind: Mapped[InsightKind] = mapped_column(string_enum(InsightKind, "kind"), index=True)
    #: The topic (module) for weak and strong topics; none for pace.
    module_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"), index=True)
    #: Mastery 0-100 for topics; for pace, percent of the schedule done minus percent expected.
    score: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    #: One sentence for the student ("You answered 3 of 9 questions on Loops correctly").
    summary: Mapped[str] = mapped_column(String(500))
    #: What it rests on: counts and sources, e.g. ``{"quiz_answers": 9, "correct": 3,
    #: "graded_assignments": 1, "lessons_done": 2, "lessons_total": 5}``.
    basis: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))

    __table_args__ = (
        Index("ix_learning_insights_user_course", "user_id", "course_id"),
        CheckConstraint("(kind = 'pace') = (\"moduleId\" IS NULL)", name="topic_for_topics"),
        CheckConstraint("kind = 'pace' OR score BETWEEN 0 AND 100", name="mastery_range"),
    )


class PathStatus(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    #: Regenerated: a newer path took its place.
    REPLACED = "replaced"


class Difficulty(enum.StrEnum):
    INTRODUCTORY = "introductory"
    CORE = "core"
    CHALLENGE = "challenge"


class LearningPath(TimestampedModel):
    """A student's personal route through one course: weakest topics first."""

    __tablename__ = "learning_paths"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    status: Mapped[PathStatus] = mapped_column(string_enum(PathStatus, "status"), default=PathStatus.ACTIVE,
                                               index=True)
    generated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Steps done / steps in all, kept by the service that completes steps.
    steps_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    steps_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        # One active path per student and course.
        Index("uq_learning_paths_active", "user_id", "course_id", unique=True,
              postgresql_where=text("status = 'active'")),
        CheckConstraint('"stepsDone" BETWEEN 0 AND "stepsTotal"', name="steps_range"),
        CheckConstraint("(status = 'completed') = (\"completedAt\" IS NOT NULL)", name="completed_with_time"),
    )


class StepKind(enum.StrEnum):
    REVIEW_LESSON = "review_lesson"  # a done lesson of a weak topic, to read again
    STUDY_LESSON = "study_lesson"  # a lesson not done yet
    RETRY_QUIZ = "retry_quiz"  # a quiz taken and not passed (or weakly)
    TAKE_QUIZ = "take_quiz"  # a quiz not taken yet
    SUBMIT_ASSIGNMENT = "submit_assignment"


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"


class PathStep(TimestampedModel):
    __tablename__ = "path_steps"

    path_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("learning_paths.id", ondelete="CASCADE"), index=True)
    #: The path's student, kept here for row-level security and for completing steps by event.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: Order in the path, from 1.
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[StepKind] = mapped_column(string_enum(StepKind, "kind"))
    difficulty: Mapped[Difficulty] = mapped_column(string_enum(Difficulty, "difficulty"))
    module_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("modules.id", ondelete="CASCADE"), index=True)
    lesson_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"), index=True)
    quiz_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("quizzes.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"),
                                                            index=True)
    #: Why this step is here, for the student ("Loops is your weakest topic: 3 of 9 correct").
    reason: Mapped[str] = mapped_column(String(300))
    status: Mapped[StepStatus] = mapped_column(string_enum(StepStatus, "status"), default=StepStatus.PENDING,
                                               index=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("path_id", "position"),
        CheckConstraint("position >= 1", name="position_positive"),
        CheckConstraint("(status = 'done') = (\"completedAt\" IS NOT NULL)", name="done_with_time"),
        CheckConstraint(
            "(kind IN ('review_lesson', 'study_lesson')) = (\"lessonId\" IS NOT NULL) AND "
            "(kind IN ('retry_quiz', 'take_quiz')) = (\"quizId\" IS NOT NULL) AND "
            "(kind = 'submit_assignment') = (\"assignmentId\" IS NOT NULL)",
            name="target_matches_kind"),
    )
