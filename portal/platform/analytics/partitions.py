"""The monthly partitions of ``events``: made ahead of time, dropped past the retention.

Both go through the SECURITY DEFINER functions of migration 0018 (the app role owns no table),
in the caller's transaction; the daily job calls them as ``system:worker``."""

from __future__ import annotations

from datetime import date, datetime

from flask import current_app
from sqlalchemy import text

from portal.db import db
from portal.db.base import utcnow


def month_start(day: date | datetime, months: int = 0) -> date:
    """The first day of the month ``months`` after (or before) the month of ``day``."""
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(day: date | datetime) -> str:
    return f"events_{day.year:04d}_{day.month:02d}"


def existing() -> list[str]:
    """The partitions of ``events``, oldest first."""
    return list(db.session.scalars(text(
        "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'public.events'::regclass ORDER BY c.relname")))


def ensure_ahead(now: datetime | None = None, ahead: int | None = None) -> list[str]:
    """Make the partitions of this month and the next ``ahead`` months (``ANALYTICS_PARTITIONS_AHEAD``)
    that are missing; returns the names made."""
    now = now or utcnow()
    ahead = current_app.config["ANALYTICS_PARTITIONS_AHEAD"] if ahead is None else ahead
    made = []
    for months in range(ahead + 1):
        first = month_start(now, months)
        if db.session.scalar(text("SELECT analytics_add_month(:day)"), {"day": first}):
            made.append(partition_name(first))
    return made


def drop_expired(now: datetime | None = None, retention_months: int | None = None) -> list[str]:
    """Drop the partitions whose whole month lies more than ``retention_months``
    (``ANALYTICS_RETENTION_MONTHS``) before this month; returns the names dropped."""
    now = now or utcnow()
    months = current_app.config["ANALYTICS_RETENTION_MONTHS"] if retention_months is None else retention_months
    if months < 1:
        raise ValueError("the retention of events is at least one month")
    cutoff = month_start(now, -months)
    return list(db.session.scalars(text("SELECT analytics_drop_months_before(:cutoff)"), {"cutoff": cutoff}))
