"""Suspicious-activity cases (spec service 5): the spec's ``suspicious_activities`` and, beside it,
``case_events``: a case's timeline (assignments, comments, attachments, status changes, reports).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum


class CaseStatus(enum.StrEnum):
    OPEN = "open"  #: new, unassigned or not yet worked
    INVESTIGATING = "investigating"
    ESCALATED = "escalated"  #: for a senior officer
    CLOSED = "closed"


CASE_TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    CaseStatus.OPEN: frozenset({CaseStatus.INVESTIGATING, CaseStatus.ESCALATED, CaseStatus.CLOSED}),
    CaseStatus.INVESTIGATING: frozenset({CaseStatus.ESCALATED, CaseStatus.CLOSED}),
    CaseStatus.ESCALATED: frozenset({CaseStatus.INVESTIGATING, CaseStatus.CLOSED}),
    CaseStatus.CLOSED: frozenset(),
}


class CaseSeverity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Disposition(enum.StrEnum):
    FALSE_POSITIVE = "false_positive"
    CONFIRMED_RISK = "confirmed_risk"
    REPORTED = "reported"  #: a suspicious activity report was filed


class SuspiciousActivity(TimestampedModel):
    """A case: one subject, the alerts that opened or joined it, and the officers' work on it.
    Students never see these rows (row-level security and no page mentions them)."""

    __tablename__ = "suspicious_activities"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[CaseStatus] = mapped_column(string_enum(CaseStatus, "status"), default=CaseStatus.OPEN,
                                               index=True)
    severity: Mapped[CaseSeverity] = mapped_column(string_enum(CaseSeverity, "severity"), index=True)
    #: The highest risk score of its alerts (0 to 100).
    risk_score: Mapped[int] = mapped_column(Integer, default=0)
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: 30 days after detection; overdue cases are highlighted.
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    assigned_to_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    disposition: Mapped[Disposition | None] = mapped_column(string_enum(Disposition, "disposition"))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The suspicious activity report built from the case's facts, once generated.
    report: Mapped[dict | None] = mapped_column(JSONB)
    report_generated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("\"riskScore\" BETWEEN 0 AND 100", name="risk_range"),
        CheckConstraint("""(status = 'closed') = ("closedAt" IS NOT NULL AND disposition IS NOT NULL)""",
                        name="closed_has_disposition"),
        # One case open per subject: new alerts attach to it.
        Index("uq_suspicious_activities_open", "user_id", unique=True, postgresql_where=text("status <> 'closed'")),
    )


class CaseEventKind(enum.StrEnum):
    CREATED = "created"
    ALERT = "alert"
    ASSIGNED = "assigned"
    COMMENT = "comment"
    ATTACHMENT = "attachment"
    STATUS = "status"
    REPORT = "report"


class CaseEvent(TimestampedModel):
    """One line of a case's timeline."""

    __tablename__ = "case_events"
    __audit_secret_columns__ = ("attachmentEncrypted",)

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("suspicious_activities.id", ondelete="CASCADE"))
    kind: Mapped[CaseEventKind] = mapped_column(string_enum(CaseEventKind, "kind"))
    #: NULL for the system (monitoring, jobs).
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    body: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    attachment_name: Mapped[str | None] = mapped_column(String(200))
    attachment_content_type: Mapped[str | None] = mapped_column(String(60))
    attachment_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (Index("ix_case_events_case_created", "case_id", text("\"createdAt\"")),)
