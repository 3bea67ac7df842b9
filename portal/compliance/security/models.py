"""Security service tables owned by the foundation: login sessions.

``session_validations`` is the server side of every login session: the browser's cookie holds
only a random token, whose SHA-256 is kept here. Logging out, changing the password or an
admin's action revokes rows, and a revoked or expired row logs the browser out at its next
request.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import User
from portal.db import TimestampedModel


class SessionValidation(TimestampedModel):
    __tablename__ = "session_validations"
    __audit_secret_columns__ = ("tokenHash",)

    #: Indexed by the composite (userId, revokedAt) below.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: SHA-256 (hex) of the token in the session cookie; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    #: Updated at most once a minute, so a busy session does not write on every request.
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Absolute end of the session, however active it is.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: logout, password_changed, password_reset, admin, deactivated, idle
    revoked_reason: Mapped[str | None] = mapped_column(String(40))

    user: Mapped[User] = relationship()

    __table_args__ = (Index(None, "user_id", "revoked_at"),)
