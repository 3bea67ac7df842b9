"""API gateway tables owned by the foundation: rate limits.

``rate_limits`` keeps one fixed-window counter per key (``login:account:<email>``,
``login:pair:<hash of the email>:<address>``, ``login:ip:<address>``, ``login:device:<nonce>``,
...). A window that has passed counts as empty, so expired rows need no job; a periodic clean-up
may delete them. ``updatedAt`` is when the key was last hit or its turn claimed, which paces
attempts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel


class RateLimit(TimestampedModel):
    __tablename__ = "rate_limits"
    #: Counters change on every failed login; the security events record what matters.
    __audited__ = False

    key: Mapped[str] = mapped_column(String(200), unique=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (CheckConstraint('"count" >= 0', name="count_non_negative"),)
