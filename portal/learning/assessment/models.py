"""Quizzes, their questions and options, attempts and answers, and the gradebook
(spec service 13, Azora Assessment)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
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
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum
from portal.learning.lms.models import POINTS

#: Percentages: 0.00 to 100.00.
PERCENT = Numeric(5, 2)


class AttemptScoring(enum.StrEnum):
    """Which attempt's score counts."""

    HIGHEST = "highest"
    LATEST = "latest"
    AVERAGE = "average"
    FIRST = "first"


class ShowAnswers(enum.StrEnum):
    """When a student sees the correct answers and feedback."""

    AFTER_SUBMIT = "after_submit"
    AFTER_CLOSE = "after_close"
    NEVER = "never"


class Quiz(TimestampedModel):
    __tablename__ = "quizzes"

    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    module_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("modules.id", ondelete="SET NULL"), index=True)
    title: Mapped[str] = mapped_column(String(160))
    #: Markdown.
    description: Mapped[str] = mapped_column(Text, default="")
    opens_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closes_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: NULL: untimed.
    time_limit_minutes: Mapped[int | None] = mapped_column(Integer)
    #: NULL: unlimited.
    max_attempts: Mapped[int | None] = mapped_column(Integer)
    scoring: Mapped[AttemptScoring] = mapped_column(string_enum(AttemptScoring, "scoring"),
                                                    default=AttemptScoring.HIGHEST)
    passing_percent: Mapped[Decimal] = mapped_column(PERCENT, default=Decimal(60), server_default="60")
    shuffle_questions: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    shuffle_options: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    show_answers: Mapped[ShowAnswers] = mapped_column(string_enum(ShowAnswers, "show_answers"),
                                                      default=ShowAnswers.AFTER_SUBMIT)
    published: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")

    __table_args__ = (
        CheckConstraint("\"timeLimitMinutes\" IS NULL OR \"timeLimitMinutes\" BETWEEN 1 AND 1440",
                        name="time_limit_range"),
        CheckConstraint("\"maxAttempts\" IS NULL OR \"maxAttempts\" >= 1", name="attempts_positive"),
        CheckConstraint("\"passingPercent\" BETWEEN 0 AND 100", name="passing_range"),
        CheckConstraint("\"closesAt\" IS NULL OR \"opensAt\" IS NULL OR \"closesAt\" > \"opensAt\"",
                        name="closes_after_opens"),
    )


class QuestionKind(enum.StrEnum):
    SINGLE = "single"  #: one correct option
    MULTIPLE = "multiple"  #: several correct options, partial credit
    TRUE_FALSE = "true_false"
    SHORT = "short"  #: a short text compared with accepted answers
    NUMERIC = "numeric"  #: a number within a tolerance
    ESSAY = "essay"  #: graded by hand


class ShortAnswerMatch(enum.StrEnum):
    EXACT = "exact"
    CASE_INSENSITIVE = "case_insensitive"
    PATTERN = "pattern"  #: a regular expression that must match the whole answer


class QuizQuestion(TimestampedModel):
    __tablename__ = "quiz_questions"

    quiz_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quizzes.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[QuestionKind] = mapped_column(string_enum(QuestionKind, "kind"))
    #: Markdown.
    prompt: Mapped[str] = mapped_column(Text)
    points: Mapped[Decimal] = mapped_column(POINTS)
    #: Short answers: the accepted answers and how they are compared.
    accepted_answers: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    match: Mapped[ShortAnswerMatch | None] = mapped_column(string_enum(ShortAnswerMatch, "match"))
    #: Numeric questions: the answer and the tolerance either side.
    numeric_answer: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))
    numeric_tolerance: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))
    #: Shown after the attempt, as the quiz's ``show_answers`` allows. Essays: the grading guide.
    feedback: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        UniqueConstraint("quiz_id", "position", deferrable=True, initially="DEFERRED"),
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint("\"numericTolerance\" IS NULL OR \"numericTolerance\" >= 0", name="tolerance_non_negative"),
        CheckConstraint("kind <> 'numeric' OR \"numericAnswer\" IS NOT NULL", name="numeric_has_answer"),
        CheckConstraint("kind <> 'short' OR match IS NOT NULL", name="short_has_match"),
    )


class QuestionOption(TimestampedModel):
    __tablename__ = "question_options"

    question_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quiz_questions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(String(500))
    is_correct: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    feedback: Mapped[str] = mapped_column(String(500), default="")

    __table_args__ = (UniqueConstraint("question_id", "position", deferrable=True, initially="DEFERRED"),)


class AttemptStatus(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    SUBMITTED = "submitted"  #: waiting for essays to be graded by hand
    GRADED = "graded"


class QuizAttempt(TimestampedModel):
    __tablename__ = "quiz_attempts"

    quiz_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quizzes.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: 1 for the first attempt of this user at this quiz.
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[AttemptStatus] = mapped_column(string_enum(AttemptStatus, "status"),
                                                  default=AttemptStatus.IN_PROGRESS, index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Fixed when the attempt starts: the earlier of start + time limit and the quiz's close.
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: True when the deadline closed it, not the student.
    auto_submitted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    #: The order the student sees: ``{"questions": [id, ...], "options": {question_id: [id, ...]}}``.
    layout: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    score: Mapped[Decimal | None] = mapped_column(POINTS)
    max_score: Mapped[Decimal | None] = mapped_column(POINTS)
    percent: Mapped[Decimal | None] = mapped_column(PERCENT)
    passed: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        UniqueConstraint("quiz_id", "user_id", "number"),
        # At most one attempt in progress per student and quiz, even under double clicks.
        Index("uq_quiz_attempts_one_open", "quiz_id", "user_id", unique=True,
              postgresql_where=text("status = 'in_progress'")),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("score IS NULL OR (score >= 0 AND score <= \"maxScore\")", name="score_range"),
        CheckConstraint("percent IS NULL OR percent BETWEEN 0 AND 100", name="percent_range"),
    )


class Answer(TimestampedModel):
    __tablename__ = "answers"

    attempt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quiz_attempts.id", ondelete="CASCADE"), index=True)
    question_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quiz_questions.id", ondelete="CASCADE"), index=True)
    #: Chosen option ids (single, multiple, true/false).
    selected_option_ids: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    text_answer: Mapped[str | None] = mapped_column(Text)
    numeric_answer: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))
    saved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Set when graded (automatically on submit, or by hand for essays).
    points_awarded: Mapped[Decimal | None] = mapped_column(POINTS)
    is_correct: Mapped[bool | None] = mapped_column(Boolean)
    grader_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    grader_feedback: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("attempt_id", "question_id"),
        CheckConstraint("\"pointsAwarded\" IS NULL OR \"pointsAwarded\" >= 0", name="points_non_negative"),
    )


class GradebookStatus(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    PASSING = "passing"
    FAILING = "failing"
    COMPLETED = "completed"


class Gradebook(TimestampedModel):
    """A student's overall grade in a course, kept current as grades change."""

    __tablename__ = "gradebooks"

    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: Weighted percentage over the graded items so far.
    percent: Mapped[Decimal | None] = mapped_column(PERCENT)
    letter: Mapped[str | None] = mapped_column(String(4))
    status: Mapped[GradebookStatus] = mapped_column(string_enum(GradebookStatus, "status"),
                                                    default=GradebookStatus.IN_PROGRESS, index=True)
    #: A grader's override of the computed percentage, with the reason.
    override_percent: Mapped[Decimal | None] = mapped_column(PERCENT)
    override_reason: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (
        UniqueConstraint("course_id", "user_id"),
        CheckConstraint("(\"overridePercent\" IS NULL) = (\"overrideReason\" IS NULL)", name="override_has_reason"),
    )
