"""Security service tables (spec service 6): login sessions, security events and blocks.

``session_validations`` is the server side of every login session: the browser's cookie holds
only a random token, whose SHA-256 is kept here. Logging out, changing the password or an
admin's action revokes rows, and a revoked or expired row logs the browser out at its next
request.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import CIDR, INET, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import User
from portal.db import TimestampedModel
from portal.db.types import string_enum


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


class Severity(enum.StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class SecurityEventKind(enum.StrEnum):
    LOGIN_FAILED = "login_failed"
    LOGIN_THROTTLED = "login_throttled"
    REQUEST_BLOCKED = "request_blocked"  #: a request from a blocked address or user
    PERMISSION_DENIED = "permission_denied"
    SESSION_NEW_IP = "session_new_ip"  #: a session used from an address it was not opened from
    ACCOUNT_ACTION = "account_action"  #: an admin created, changed, deactivated an account
    BLOCK_ADDED = "block_added"
    BLOCK_LIFTED = "block_lifted"
    SESSIONS_ENDED = "sessions_ended"  #: a user's or an admin's ending of sessions
    WEBHOOK_REJECTED = "webhook_rejected"  #: a payment webhook with a bad signature or body
    CARD_CVV_LOCKOUT = "card_cvv_lockout"  #: a card frozen after too many wrong security codes
    CARD_NETWORK_REJECTED = "card_network_rejected"  #: a card network message unsigned, forged or replayed
    PERSONAL_DATA_VIEWED = "personal_data_viewed"  #: an admin read personal rows in the data browser


class SecurityEvent(TimestampedModel):
    """Something the portal's defences saw or did, with a severity (append-only in practice:
    nothing updates these rows)."""

    __tablename__ = "security_events"

    kind: Mapped[SecurityEventKind] = mapped_column(string_enum(SecurityEventKind, "kind", 30), index=True)
    severity: Mapped[Severity] = mapped_column(string_enum(Severity, "severity"), index=True)
    #: Whom it concerns (the account attacked or acting), when known.
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    #: The admin or officer who acted, for admin actions.
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    ip_address: Mapped[str | None] = mapped_column(INET, index=True)
    user_agent: Mapped[str | None] = mapped_column(String(300))
    path: Mapped[str | None] = mapped_column(String(300))
    #: A sentence for the page, e.g. "5 failed logins for alice@example.org".
    summary: Mapped[str] = mapped_column(String(500), default="")
    details: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))

    __table_args__ = (Index("ix_security_events_created", text('"createdAt" DESC'), text("id DESC")),)


class BlockKind(enum.StrEnum):
    IP = "ip"  #: one address
    NETWORK = "network"  #: an address range (CIDR)
    USER = "user"


class BlockSource(enum.StrEnum):
    ADMIN = "admin"
    AUTOMATIC = "automatic"  #: after repeated failed logins


class BlockedEntity(TimestampedModel):
    """A block on an address, a range or a user. It applies while ``liftedAt`` is NULL and
    ``expiresAt`` is NULL (permanent) or in the future, so an expired block stops applying by
    itself, with no job to run."""

    __tablename__ = "blocked_entities"

    kind: Mapped[BlockKind] = mapped_column(string_enum(BlockKind, "kind"), index=True)
    #: The address or range, for ``ip`` and ``network`` (a /32 or /128 for one address).
    network: Mapped[str | None] = mapped_column(CIDR)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    source: Mapped[BlockSource] = mapped_column(string_enum(BlockSource, "source"), default=BlockSource.ADMIN)
    #: NULL: permanent.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lifted_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)

    __table_args__ = (
        CheckConstraint("""(kind = 'user') = ("userId" IS NOT NULL) AND (kind = 'user') = (network IS NULL)""",
                        name="target_matches_kind"),
        CheckConstraint('"expiresAt" IS NULL OR "expiresAt" > "createdAt"', name="expires_after_creation"),
        # Which blocks contain an address: a GiST index answers ``network >>= :ip``.
        Index("ix_blocked_entities_network", "network", postgresql_using="gist", postgresql_ops={"network": "inet_ops"}),
    )
