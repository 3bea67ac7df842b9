"""Who manages a course, assignments with rubrics, submissions, grades and certificates
(spec service 11, Azora LMS)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
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

#: Points and scores: up to 9999.99.
POINTS = Numeric(6, 2)


class ManagementRole(enum.StrEnum):
    OWNER = "owner"  #: created the course; edits everything, adds co-instructors
    INSTRUCTOR = "instructor"  #: edits content, grades, releases grades
    ASSISTANT = "assistant"  #: grades; does not edit content or release grades


class CourseManagement(TimestampedModel):
    __tablename__ = "course_managements"

    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[ManagementRole] = mapped_column(string_enum(ManagementRole, "role"))

    __table_args__ = (UniqueConstraint("course_id", "user_id"),)


class Assignment(TimestampedModel):
    __tablename__ = "assignments"

    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    module_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("modules.id", ondelete="SET NULL"), index=True)
    title: Mapped[str] = mapped_column(String(160))
    #: Markdown.
    instructions: Mapped[str] = mapped_column(Text, default="")
    points: Mapped[Decimal] = mapped_column(POINTS)
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: No submission after this; NULL: the due date is also the cut-off.
    cutoff_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Percent of the points taken off per day (or part of a day) late.
    late_penalty_percent_per_day: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=Decimal(0),
                                                                  server_default="0")
    #: The lowest a late penalty can bring the score to, as a percent of the points earned.
    late_penalty_floor_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=Decimal(0),
                                                                server_default="0")
    allow_text: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    allow_files: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    #: Largest upload in bytes.
    max_file_bytes: Mapped[int] = mapped_column(Integer, default=5_000_000, server_default="5000000")
    #: Accepted file name extensions, lower case without the dot, e.g. ["pdf", "txt"].
    allowed_extensions: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    #: ``[{"id", "title", "description", "levels": [{"id", "title", "description", "points"}]}]``;
    #: each criterion's best level is worth its share of ``points``.
    rubric: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    #: Per-student extensions: ``{user_id: iso datetime}`` replacing due and cut-off for them.
    extensions: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    published: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")

    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint("\"cutoffAt\" IS NULL OR \"dueAt\" IS NULL OR \"cutoffAt\" >= \"dueAt\"",
                        name="cutoff_after_due"),
        CheckConstraint("\"latePenaltyPercentPerDay\" BETWEEN 0 AND 100", name="penalty_range"),
        CheckConstraint("\"latePenaltyFloorPercent\" BETWEEN 0 AND 100", name="floor_range"),
        CheckConstraint("\"maxFileBytes\" BETWEEN 1 AND 50000000", name="file_size_range"),
    )


class SubmissionStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    GRADED = "graded"  #: graded, not yet released to the student
    RELEASED = "released"


class Submission(TimestampedModel):
    """A student's latest submission for an assignment; resubmitting replaces it until the
    cut-off (the audit trail keeps the earlier versions)."""

    __tablename__ = "submissions"
    __audit_secret_columns__ = ("fileContent",)

    assignment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[SubmissionStatus] = mapped_column(string_enum(SubmissionStatus, "status"),
                                                     default=SubmissionStatus.SUBMITTED, index=True)
    text_answer: Mapped[str | None] = mapped_column(Text)
    #: The uploaded file's original name (shown), its type and size; the bytes are stored
    #: encrypted and served only through an access-checked view.
    file_name: Mapped[str | None] = mapped_column(String(200))
    file_type: Mapped[str | None] = mapped_column(String(100))
    file_size: Mapped[int | None] = mapped_column(Integer)
    file_content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: How many times the student has submitted.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: Days late when submitted (0 when on time), after any extension.
    days_late: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("assignment_id", "user_id"),
        CheckConstraint("\"textAnswer\" IS NOT NULL OR \"fileName\" IS NOT NULL", name="has_content"),
        CheckConstraint("\"fileSize\" IS NULL OR \"fileSize\" >= 0", name="file_size_positive"),
        Index("ix_submissions_assignmentId_status", "assignment_id", "status"),
    )


class Grade(TimestampedModel):
    """The grade of one assignment submission. (A quiz answer graded by hand keeps its points
    on the answer.)"""

    __tablename__ = "grades"

    submission_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), unique=True)
    assignment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    grader_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    #: ``{criterion_id: level_id}`` chosen on the rubric.
    rubric_levels: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    #: Points from the rubric (or entered directly when there is no rubric), before any penalty.
    raw_score: Mapped[Decimal] = mapped_column(POINTS)
    #: Points taken off for lateness.
    penalty: Mapped[Decimal] = mapped_column(POINTS, default=Decimal(0), server_default="0")
    score: Mapped[Decimal] = mapped_column(POINTS)
    feedback: Mapped[str] = mapped_column(Text, default="")
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # One grade per student and assignment (as there is one submission); it also serves the
        # gradebook's per-student look-ups.
        UniqueConstraint("user_id", "assignment_id"),
        CheckConstraint("\"rawScore\" >= 0 AND penalty >= 0 AND score >= 0", name="scores_non_negative"),
        CheckConstraint("score <= \"rawScore\"", name="penalty_only_lowers"),
    )


class Certificate(TimestampedModel):
    """A course completion certificate. ``payload`` is what is signed (Ed25519); each row
    records the hash of the one issued before it, so the register is a hash chain."""

    __tablename__ = "certificates"

    #: Position in the register (the hash chain's order).
    serial: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    #: Public, unguessable code of the verification page.
    code: Mapped[str] = mapped_column(String(40), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id", ondelete="RESTRICT"), index=True)
    holder_name: Mapped[str] = mapped_column(String(120))
    course_title: Mapped[str] = mapped_column(String(160))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The canonical JSON that was signed.
    payload: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(200))
    #: Which signing key (its public key's fingerprint), for rotation.
    key_id: Mapped[str] = mapped_column(String(64))
    #: The previous certificate's ``entry_hash`` (by serial); 64 zeros for the first.
    previous_hash: Mapped[str] = mapped_column(String(64))
    #: SHA-256 hex of this certificate's payload, signature and previous hash.
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(500))
    revoked_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                            index=True)

    __table_args__ = (
        UniqueConstraint("user_id", "course_id"),
        CheckConstraint("(\"revokedAt\" IS NULL) = (\"revokedReason\" IS NULL)", name="revocation_has_reason"),
    )
