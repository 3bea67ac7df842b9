"""Analytics tables (spec service 16): ``events`` (what users do) and ``metrics`` (figures).

``metrics`` holds two kinds of row. A *point* (``period`` NULL) is a figure recorded at a time:
the ledger's verification writes ``ledger.verification`` there, so the admin pages show the last
run whoever ran it (the nightly job or an operator's ``flask ledger verify``), and the cache writes
its lookup counts. A *rollup* (``period`` ``hour`` or ``day``) is a figure over the period that
starts at ``recordedAt``, written by the rollup job (``portal.platform.analytics.rollups``); one
row per name, period, start and labels (a unique index), so running the job again rewrites the
same rows instead of adding more.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, Index, Numeric, String, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Model, TimestampedModel
from portal.db.base import utcnow

#: The periods a rollup covers.
PERIODS = ("hour", "day")


class Metric(TimestampedModel):
    __tablename__ = "metrics"

    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[Decimal] = mapped_column(Numeric(38, 18))
    #: What the figure is about (a currency, a decision) and anything a page shows beside it.
    labels: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    #: For a point, when it was recorded; for a rollup, when its period starts.
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: NULL for a point; ``hour`` or ``day`` for a rollup.
    period: Mapped[str | None] = mapped_column(String(8))

    __table_args__ = (
        Index("ix_metrics_name_recorded", "name", text('"recordedAt" DESC')),
        CheckConstraint("period IS NULL OR period IN ('hour', 'day')", name="period"),
        Index("uq_metrics_rollup", "name", "period", "recorded_at", "labels", unique=True,
              postgresql_where=text("period IS NOT NULL")),
    )


class Event(Model):
    """One thing a user did, recorded from a domain event after its transaction committed.

    Partitioned by month on ``occurredAt`` (migration 0018): the primary key holds the partition
    key, as PostgreSQL requires, and old months go by dropping their partition, not by DELETE.
    ``userId`` has no foreign key: the log must take a batch whatever becomes of a user row, and
    a key from a partitioned table to ``users`` would make every batch check each user. No audit
    trigger either: the rows are the trail of themselves, written once and never changed."""

    __tablename__ = "events"
    __audited__ = False

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4,
                                          server_default=text("gen_random_uuid()"), sort_order=-10)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True, default=utcnow)
    name: Mapped[str] = mapped_column(String(60))
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    #: The login session the event happened in (its record's id), when there was one.
    session_id: Mapped[str | None] = mapped_column(String(64))
    properties: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 server_default=text("now()"), sort_order=10)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 server_default=text("now()"), sort_order=10)

    __table_args__ = (
        Index("ix_events_name_occurred", "name", "occurred_at"),
        Index("ix_events_user_occurred", "user_id", "occurred_at"),
        {"postgresql_partition_by": 'RANGE ("occurredAt")'},
    )
