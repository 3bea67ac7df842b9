"""API gateway tables: rate limits, personal access tokens and the request log.

``rate_limits`` keeps one fixed-window counter per key (``login:account:<email>``,
``login:pair:<hash of the email>:<address>``, ``login:ip:<address>``, ``login:device:<nonce>``,
``api:token:<id>:<group>``, ``api:user:<id>:<group>``, ``api:ip:<address>:<group>``, ...). A
window that has passed counts as empty, so expired rows need no job; a periodic clean-up may
delete them. ``updatedAt`` is when the key was last hit or its turn claimed, which paces attempts.

``api_tokens`` are personal access tokens, a table of their own rather than a kind of session
(``session_validations``): a session belongs to a browser, idles out after two hours and rides
in a cookie; a token belongs to a script, lives until its expiry date or its revocation, carries
scopes (``read``, ``write``) and a name its owner chose, and is sent as ``Authorization: Bearer``.
Only a keyed hash of the secret is kept (HMAC-SHA256 under a key derived from ``SECRET_KEY``),
with a short prefix of the token in clear so its owner can recognise it in the list.

``api_logs`` records every API request and a sample of page requests: method, route template,
status, duration, user, token, address and request id. Rows are written in batches after the
response (``portal.platform.gateway.logs``), never audited (they would double every request's
writes and the trail would copy addresses) and dropped after ``API_LOG_RETENTION_DAYS`` by a job.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.base import Model

#: What a token may do: ``read`` reads the owner's data, ``write`` also changes it.
SCOPES = ("read", "write")


class RateLimit(TimestampedModel):
    __tablename__ = "rate_limits"
    #: Counters change on every failed login; the security events record what matters.
    __audited__ = False

    key: Mapped[str] = mapped_column(String(200), unique=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (CheckConstraint('"count" >= 0', name="count_non_negative"),)


class ApiToken(TimestampedModel):
    __tablename__ = "api_tokens"
    __audit_secret_columns__ = ("tokenHash",)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: The name its owner gave it ("grades export", "budget script").
    name: Mapped[str] = mapped_column(String(80))
    #: The first characters of the token (``azp_`` and 8 more), shown in the list.
    prefix: Mapped[str] = mapped_column(String(16))
    #: HMAC-SHA256 of the whole token, hex.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(10)))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: When it was last used, touched at most once a minute.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("scopes <@ ARRAY['read', 'write']::varchar(10)[] AND cardinality(scopes) > 0",
                        name="scopes_known"),
        CheckConstraint("char_length(name) BETWEEN 1 AND 80", name="name_length"),
    )

    @property
    def can_write(self) -> bool:
        return "write" in self.scopes


class ApiLog(Model):
    __tablename__ = "api_logs"
    #: One row per logged request: the trail would double the writes and copy addresses.
    __audited__ = False

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    #: ``api`` (every request under /api) or ``page`` (a sample of the others).
    kind: Mapped[str] = mapped_column(String(4))
    method: Mapped[str] = mapped_column(String(10))
    #: The route's template (``/api/v1/notifications/<note_id>/read``), never the filled path:
    #: ids would make every request a route of its own. Unmatched paths are ``<unmatched>``.
    route: Mapped[str] = mapped_column(String(200))
    status: Mapped[int] = mapped_column(SmallInteger)
    duration_ms: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[uuid.UUID | None] = mapped_column()
    token_id: Mapped[uuid.UUID | None] = mapped_column()
    ip_address: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint("kind IN ('api', 'page')", name="kind_known"),
        # The traffic page reads the last hour or day; the clean-up deletes the oldest rows.
        Index("ix_api_logs_createdAt", "created_at"),
    )

