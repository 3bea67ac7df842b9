"""Recorded metrics: a named figure at a time, with labels (spec service 16, Analytics).

The ledger's verification records its result here (``ledger.verification``), so the admin
pages show the last run whoever ran it: the nightly job or an operator's ``flask ledger verify``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, Index, Numeric, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TimestampedModel
from portal.db.base import utcnow


class Metric(TimestampedModel):
    __tablename__ = "metrics"

    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[Decimal] = mapped_column(Numeric(38, 18))
    #: What the figure is about and anything a page shows beside it.
    labels: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_metrics_name_recorded", "name", text('"recordedAt" DESC')),)
