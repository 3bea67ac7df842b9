from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel


class Notification(TimestampedModel):
    __tablename__ = "notifications"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: What happened, as a domain event name or a short kind (``account``, ``grade_released``).
    kind: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    #: A path inside the portal to open from the notification.
    link: Mapped[str | None] = mapped_column(String(500))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # The bell counts unread rows of one user: a small partial index answers it.
        Index("ix_notifications_unread", "user_id", postgresql_where=text('"readAt" IS NULL')),
    )


Index("ix_notifications_userId_createdAt_id", Notification.user_id, Notification.created_at, Notification.id)
