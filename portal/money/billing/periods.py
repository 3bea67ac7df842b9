"""Billing periods, anchored on the start, in UTC.

A subscription's period ``n`` runs from ``anchor + n intervals`` to ``anchor + (n + 1)
intervals``, each computed from the anchor, never from the previous period's end: a monthly
subscription started on 31 January renews on 28 February (29 in a leap year), then on 31 March,
30 April, 31 May... The day of the month is clamped to the month's length, and the time of day
is the anchor's. A yearly one started on 29 February renews on 28 February, and on 29 February
again in the next leap year.

Also the clock: ``now()`` is the one source of the current time for billing, so tests move it
(``time-machine``) and jobs catch up to it.
"""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, datetime

from portal.db.base import utcnow


def now() -> datetime:
    """The current moment in UTC (the one clock billing reads)."""
    return utcnow()


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is refused (billing never guesses a zone)."""
    if moment.tzinfo is None:
        raise ValueError("Billing times must carry a time zone.")
    return moment.astimezone(UTC)


def add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by ``months`` calendar months, the day clamped to the target month."""
    anchor = as_utc(anchor)
    years, month0 = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + years, month0 + 1
    day = min(anchor.day, monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_bounds(anchor: datetime, months: int, index: int) -> tuple[datetime, datetime]:
    """Start and end of period ``index`` (0 is the first) of ``months``-month periods."""
    if index < 0:
        raise ValueError("A period index is never negative.")
    return add_months(anchor, index * months), add_months(anchor, (index + 1) * months)


def index_at(anchor: datetime, months: int, moment: datetime) -> int:
    """The index of the period that contains ``moment`` (0 for moments before the anchor)."""
    anchor, moment = as_utc(anchor), as_utc(moment)
    if moment < anchor:
        return 0
    # An estimate from the calendar, then corrected by at most a step each way.
    index = max(0, ((moment.year - anchor.year) * 12 + moment.month - anchor.month) // months)
    while index > 0 and add_months(anchor, index * months) > moment:
        index -= 1
    while add_months(anchor, (index + 1) * months) <= moment:
        index += 1
    return index


def days_between(start: datetime, end: datetime) -> int:
    """Whole UTC calendar days from ``start``'s date to ``end``'s date."""
    return (as_utc(end).date() - as_utc(start).date()).days
