from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.types import string_enum


class EmailStatus(enum.StrEnum):
    QUEUED = "queued"  #: waiting for its first or next attempt (see nextAttemptAt)
    SENT = "sent"
    FAILED = "failed"  #: gave up after MAIL_MAX_ATTEMPTS


class Email(TimestampedModel):
    __tablename__ = "emails"
    # The body carries one-time links (verification, password reset): kept out of the trail.
    __audit_secret_columns__ = ("bodyText",)

    #: The user it was written for, when there is one.
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body_text: Mapped[str] = mapped_column(Text)
    #: Template name, e.g. ``verify_email``; lets tests and operators find mails by purpose.
    template: Mapped[str] = mapped_column(String(60))
    status: Mapped[EmailStatus] = mapped_column(
string_enum(EmailStatus, "status", 10), default=EmailStatus.QUEUED,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        Index(None, "status", "next_attempt_at"),
    )


Index("ix_emails_toAddress_createdAt", Email.to_address, Email.created_at)
